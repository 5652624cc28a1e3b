"""Handlers of the Sessions tag."""

from __future__ import annotations

import uuid
from typing import Any

from sessions_api.core import settings
from sessions_api.handlers.listing import list_body
from sessions_api.models import leases, session_facts, sessions
from sessions_api.models.errors import InvalidInput
from sessions_api.models.paging import cursor

API_BASE = "/api/v1"


async def listSessions(
    token_info: dict[str, Any],
    limit: int = 100,
    before: str | None = None,
    status: str | None = None,
    platform: str | None = None,
    user: str | None = None,
    device: str | None = None,
    build: str | None = None,
    tag: list[str] | None = None,
    result: str | None = None,
) -> dict[str, Any]:
    principal = token_info["principal"]
    filters = sessions.SessionFilters(
        status=status,
        platform=platform,
        user_id=uuid.UUID(user) if user else None,
        device_id=uuid.UUID(device) if device else None,
        build=build.strip() if build is not None else None,  # stored without surrounding spaces
        result=result,
        tags=tuple(tag or ()),
    )
    page = await sessions.list_page(principal.organization_id, limit, cursor(before), filters)
    return list_body(page, session_json)


async def getSession(sessionId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    principal = token_info["principal"]
    return session_json(await sessions.get_session(principal.organization_id, uuid.UUID(sessionId)))


def createSession(
    body: dict[str, Any], token_info: dict[str, Any], idempotency_key: str | None = None
) -> tuple[dict[str, Any], int, dict[str, str]]:
    principal = token_info["principal"]
    wanted = leases.DeviceWanted(
        platform=body["platform"],
        os_version=body.get("osVersion"),
        type=body.get("type"),
        name=body.get("name"),
        max_duration_minutes=body.get("maxDurationMinutes"),
    )
    started = leases.start_session(
        principal,
        wanted,
        render=session_json,
        idempotency_key=idempotency_key,
        facts=body.get("facts", {}),
        queue_wait_seconds=_queue_wait(body.get("queue")),
    )
    queued = started.queued_request_id is not None
    headers = {"Location": f"{API_BASE}/{'session-requests' if queued else 'sessions'}/{started.body['id']}"}
    if started.replayed:
        headers["Idempotent-Replayed"] = "true"
    return started.body, 202 if queued else 201, headers


def _queue_wait(options: dict[str, Any] | None) -> int | None:
    """How long a start with `queue` may wait, within this server's maximum."""
    if options is None:
        return None
    most = settings.current().max_queue_wait_seconds
    if options["maxWaitSeconds"] > most:
        raise InvalidInput(f"queue.maxWaitSeconds must be at most {most} on this server.")
    return int(options["maxWaitSeconds"])


def updateSession(sessionId: str, body: dict[str, Any], token_info: dict[str, Any]) -> dict[str, Any]:
    principal = token_info["principal"]
    return session_json(session_facts.update_session(principal, uuid.UUID(sessionId), body))


def releaseSession(sessionId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    principal = token_info["principal"]
    return session_json(leases.release_session(principal, uuid.UUID(sessionId)))


# A session as the API answers it, defined once beside the view it reads (webhook payloads use it too).
session_json = sessions.session_document
