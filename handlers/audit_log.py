"""Handlers of the Audit log tag."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.handlers.listing import list_body
from sessions_api.models import audit
from sessions_api.models.paging import cursor
from sessions_api.models.tables import AuditEventType, Origin


def listAuditEvents(
    token_info: dict[str, Any],
    limit: int = 100,
    before: str | None = None,
    type: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    filters = audit.EventFilters(
        type=AuditEventType(type) if type is not None else None,
        actor_user_id=uuid.UUID(actor) if actor is not None else None,
    )
    page = audit.list_page(token_info["principal"].organization_id, limit, cursor(before), filters)
    return list_body(page, event_json)


def event_json(row: Row[Any]) -> dict[str, Any]:
    """An event row; `actor` is null for the system, and names no user or key for the command line."""
    actor = None if row.origin is Origin.system else {"user": row.actor_user_id, "key": row.actor_key_id}
    return {
        "id": row.id,
        "organization": row.organization_id,
        "type": row.type.value,
        "createdAt": row.created_at,
        "origin": row.origin.value,
        "actor": actor,
        "target": {"kind": row.target_kind, "id": row.target_id},
        "data": row.data,
    }
