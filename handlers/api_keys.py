"""Handlers of the API keys tag."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.handlers.listing import list_body
from sessions_api.models import api_keys
from sessions_api.models.paging import cursor, instant


def listApiKeys(
    token_info: dict[str, Any], limit: int = 100, before: str | None = None, scope: str = "user"
) -> dict[str, Any]:
    page = api_keys.list_keys(token_info["principal"], api_keys.KeyScope(scope), limit, cursor(before))
    return list_body(page, key_json)


def createApiKey(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    organization = body.get("organization")
    key, secret = api_keys.create_own_key(
        token_info["principal"],
        body["name"],
        uuid.UUID(organization) if organization is not None else None,
        instant(body.get("expiresAt"), "expiresAt"),
    )
    return {**key_json(key), "secret": secret}, 201


def revokeApiKey(keyId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return key_json(api_keys.revoke_visible_key(token_info["principal"], uuid.UUID(keyId)))


def key_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "user": row.user_id,
        "organization": row.organization_id,
        "createdAt": row.created_at,
        "lastUsedAt": row.last_used_at,
        "expiresAt": row.expires_at,
        "revokedAt": row.revoked_at,
    }
