"""Handlers of the Webhooks tag.

Creating and changing an endpoint's URL checks it first (`webhook_delivery.vet_url`, which may
resolve its name: on the event loop, never holding a database thread); the test sends at once
and answers with the attempt. Both are `async def`, and run their database work on its threads.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.core import db_threads
from sessions_api.handlers.listing import list_body
from sessions_api.models import webhook_delivery, webhooks
from sessions_api.models.paging import cursor


def listWebhookEndpoints(token_info: dict[str, Any], limit: int = 100, before: str | None = None) -> dict[str, Any]:
    page = webhooks.list_endpoints(token_info["principal"].organization_id, limit, cursor(before))
    return list_body(page, endpoint_json)


async def createWebhookEndpoint(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    await webhook_delivery.vet_url(body["url"])
    endpoint, secret = await db_threads.write(
        webhooks.create_endpoint, token_info["principal"], body["url"], body["events"], body.get("description")
    )
    return {**endpoint_json(endpoint), "secret": secret}, 201


def getWebhookEndpoint(endpointId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return endpoint_json(webhooks.get_endpoint(token_info["principal"].organization_id, uuid.UUID(endpointId)))


async def updateWebhookEndpoint(endpointId: str, body: dict[str, Any], token_info: dict[str, Any]) -> dict[str, Any]:
    if "url" in body:
        await webhook_delivery.vet_url(body["url"])
    # The request's names are the data layer's (url, events, description, enabled).
    endpoint = await db_threads.write(webhooks.update_endpoint, token_info["principal"], uuid.UUID(endpointId), body)
    return endpoint_json(endpoint)


def deleteWebhookEndpoint(endpointId: str, token_info: dict[str, Any]) -> tuple[None, int]:
    webhooks.delete_endpoint(token_info["principal"], uuid.UUID(endpointId))
    return None, 204


def rotateWebhookEndpointSecret(endpointId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    endpoint, secret = webhooks.rotate_secret(token_info["principal"], uuid.UUID(endpointId))
    return {**endpoint_json(endpoint), "secret": secret}


async def testWebhookEndpoint(endpointId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return attempt_json(await webhook_delivery.send_test(token_info["principal"], uuid.UUID(endpointId)))


def listWebhookDeliveries(
    endpointId: str, token_info: dict[str, Any], limit: int = 100, before: str | None = None
) -> dict[str, Any]:
    organization_id = token_info["principal"].organization_id
    page = webhooks.list_attempts(organization_id, uuid.UUID(endpointId), limit, cursor(before))
    return list_body(page, attempt_json)


def endpoint_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "organization": row.organization_id,
        "url": row.url,
        "description": row.description,
        "events": row.events,
        "enabled": row.enabled,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def attempt_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "event": {"id": row.event_id, "type": row.event_type},
        "attempt": row.attempt,
        "createdAt": row.created_at,
        "succeeded": row.succeeded,
        "responseStatus": row.response_status,
        "error": row.error,
        "durationMs": row.duration_ms,
    }
