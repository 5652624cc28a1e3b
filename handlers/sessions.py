"""Handlers of the Sessions tag."""

from __future__ import annotations

import uuid

from sqlalchemy import Row

from models import sessions
from sessions_api.errors import ApiError
from sessions_api.timestamps import format_utc, parse_rfc3339


def listSessions(token_info: dict, limit: int = 100, before: str | None = None) -> dict:
    principal = token_info["principal"]
    page = sessions.list_page(principal.organization_id, limit, _cursor(before))
    body = {"object": "list", "data": [session_json(row) for row in page.rows]}
    if page.has_more:
        body["nextCursor"] = format_utc(page.rows[-1].created_at)
    return body


def getSession(sessionId: str, token_info: dict) -> dict:
    principal = token_info["principal"]
    return session_json(sessions.get_session(principal.organization_id, uuid.UUID(sessionId)))


def session_json(row: Row) -> dict:
    released_at = row.released_at
    return {
        "id": str(row.id),
        "organization": str(row.organization_id),
        "user": str(row.user_id),
        "device": {
            "id": str(row.device_id),
            "platform": row.platform,
            "type": row.type,
            "name": row.name,
            "osVersion": row.os_version,
        },
        "createdAt": format_utc(row.created_at),
        "releasedAt": format_utc(released_at) if released_at is not None else None,
    }


def _cursor(before: str | None):
    if before is None:
        return None
    try:
        # Stored instants are whole microseconds: rounding a finer bound up keeps "strictly before" exact.
        return parse_rfc3339(before, round_up=True, clamp=True)
    except ValueError as exc:
        raise ApiError(400, f"Query parameter 'before' must be an RFC 3339 timestamp with an offset: {exc}.") from None
