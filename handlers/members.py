"""Handlers of the Members tag.

Under /organizations/{organizationId} the security handler has made the path's organization
the one the request acts on (the principal's), so handlers act on that one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.handlers.listing import list_body
from sessions_api.models import Role, members
from sessions_api.models.paging import cursor


def listMembers(
    organizationId: str, token_info: dict[str, Any], limit: int = 100, before: str | None = None
) -> dict[str, Any]:
    page = members.list_page(token_info["principal"].organization_id, limit, cursor(before))
    return list_body(page, member_json)


def changeMemberRole(
    organizationId: str, userId: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    return member_json(members.change_role(token_info["principal"], uuid.UUID(userId), Role(body["role"])))


def removeMember(organizationId: str, userId: str, token_info: dict[str, Any]) -> tuple[None, int]:
    members.remove_member(token_info["principal"], uuid.UUID(userId))
    return None, 204


def member_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "user": {"id": row.user_id, "email": row.email, "name": row.name},
        "role": Role(row.role).value,
        "createdAt": row.created_at,
    }
