"""Handlers of the Sessions tag."""

from __future__ import annotations

import uuid

from connexion import request
from sqlalchemy import Row

from handlers.listing import cursor, list_body
from models import leases, sessions

API_BASE = "/api/v1"


def listSessions(
    token_info: dict, limit: int = 100, before: str | None = None, status: str | None = None,
    platform: str | None = None, device: str | None = None,
) -> dict:
    principal = token_info["principal"]
    # Connexion passes the caller's id as `user`, so the `user` filter is read from the query itself.
    user = request.query_params.get("user")
    filters = sessions.SessionFilters(
        status=status, platform=platform, user_id=uuid.UUID(user) if user else None,
        device_id=uuid.UUID(device) if device else None,
    )
    return list_body(sessions.list_page(principal.organization_id, limit, cursor(before), filters), session_json)


def getSession(sessionId: str, token_info: dict) -> dict:
    principal = token_info["principal"]
    return session_json(sessions.get_session(principal.organization_id, uuid.UUID(sessionId)))


def createSession(body: dict, token_info: dict):
    principal = token_info["principal"]
    started = leases.start_session(
        principal.organization_id, principal.user_id, leases.DeviceWanted(**body), render=session_json,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    headers = {"Location": f"{API_BASE}/sessions/{started.body['id']}"}
    if started.replayed:
        headers["Idempotent-Replayed"] = "true"
    return started.body, 201, headers


def releaseSession(sessionId: str, token_info: dict) -> dict:
    principal = token_info["principal"]
    return session_json(leases.release_session(principal.organization_id, uuid.UUID(sessionId)))


def session_json(row: Row) -> dict:
    """A session row of the data layer, whose ids and instants are already the API's text."""
    # One unpacking (in the view's column order) costs a fraction of eleven attribute lookups.
    (session_id, organization_id, user_id, device_id, platform, device_type, name, os_version,
     created_at, released_at, expires_at) = row
    return {
        "id": session_id,
        "organization": organization_id,
        "user": user_id,
        "device": {
            "id": device_id,
            "platform": platform,
            "type": device_type,
            "name": name,
            "osVersion": os_version,
        },
        "createdAt": created_at,
        "releasedAt": released_at,
        "expiresAt": expires_at,
    }
