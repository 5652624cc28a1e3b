"""Handlers of the Events tag: the organization's event log."""

from __future__ import annotations

import uuid
from typing import Any

from sessions_api.handlers.listing import list_body
from sessions_api.models import Role, events
from sessions_api.models.paging import cursor


def listEvents(
    token_info: dict[str, Any],
    limit: int = 100,
    before: str | None = None,
    type: list[str] | None = None,
    session: str | None = None,
) -> dict[str, Any]:
    principal = token_info["principal"]
    page = events.list_page(
        principal.organization_id,
        limit,
        cursor(before),
        admin=principal.role is Role.admin,
        types=tuple(type or ()),
        session_id=uuid.UUID(session) if session else None,
    )
    return list_body(page, events.event_document)
