"""Handlers of the Invitations tag: admins invite and manage their organization's
invitations; the invitee lists and answers their own."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.handlers.listing import list_body
from sessions_api.models import Role, invitations
from sessions_api.models.paging import cursor


def listInvitations(
    organizationId: str, token_info: dict[str, Any], limit: int = 100, before: str | None = None
) -> dict[str, Any]:
    page = invitations.list_for_organization(token_info["principal"].organization_id, limit, cursor(before))
    return list_body(page, invitation_json)


def createInvitation(
    organizationId: str, body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    return invitation_json(invitations.invite(token_info["principal"], body["email"], Role(body["role"]))), 201


def revokeInvitation(organizationId: str, invitationId: str, token_info: dict[str, Any]) -> tuple[None, int]:
    invitations.revoke(token_info["principal"], uuid.UUID(invitationId))
    return None, 204


def listMyInvitations(token_info: dict[str, Any], limit: int = 100, before: str | None = None) -> dict[str, Any]:
    return list_body(invitations.list_mine(token_info["principal"], limit, cursor(before)), invitation_json)


def acceptInvitation(invitationId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return invitation_json(invitations.accept(token_info["principal"], uuid.UUID(invitationId)))


def declineInvitation(invitationId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return invitation_json(invitations.decline(token_info["principal"], uuid.UUID(invitationId)))


def invitation_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "organization": row.organization_id,
        "email": row.email,
        "role": Role(row.role).value,
        "status": row.status,
        "createdAt": row.created_at,
        "expiresAt": row.expires_at,
    }
