"""Handlers of the Sessions tag."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.handlers.listing import list_body
from sessions_api.models import leases, sessions
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
) -> dict[str, Any]:
    principal = token_info["principal"]
    filters = sessions.SessionFilters(
        status=status,
        platform=platform,
        user_id=uuid.UUID(user) if user else None,
        device_id=uuid.UUID(device) if device else None,
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
    )
    headers = {"Location": f"{API_BASE}/sessions/{started.body['id']}"}
    if started.replayed:
        headers["Idempotent-Replayed"] = "true"
    return started.body, 201, headers


def releaseSession(sessionId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    principal = token_info["principal"]
    return session_json(leases.release_session(principal, uuid.UUID(sessionId)))


# Positions of the session view's columns, by name (the view defines names and order once).
_AT = {name: index for index, name in enumerate(sessions.SESSION_VIEW_COLUMNS)}
_ID, _ORGANIZATION, _USER, _DEVICE, _PLATFORM, _TYPE, _NAME, _OS_VERSION, _CREATED, _RELEASED, _EXPIRES = (
    _AT[name]
    for name in (
        "id",
        "organization_id",
        "user_id",
        "device_id",
        "platform",
        "type",
        "name",
        "os_version",
        "created_at",
        "released_at",
        "expires_at",
    )
)


def session_json(row: Row[Any]) -> dict[str, Any]:
    """A session row of the data layer, whose ids and instants are already the API's text."""
    # Indexing by position costs a fraction of looking up eleven names on a Row.
    return {
        "id": row[_ID],
        "organization": row[_ORGANIZATION],
        "user": row[_USER],
        "device": {
            "id": row[_DEVICE],
            "platform": row[_PLATFORM],
            "type": row[_TYPE],
            "name": row[_NAME],
            "osVersion": row[_OS_VERSION],
        },
        "createdAt": row[_CREATED],
        "releasedAt": row[_RELEASED],
        "expiresAt": row[_EXPIRES],
    }
