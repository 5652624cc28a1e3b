"""Handlers of the Me tag."""

from __future__ import annotations

from typing import Any

from sessions_api.models import api_keys


def getMe(token_info: dict[str, Any]) -> dict[str, Any]:
    row = api_keys.describe_caller(token_info["principal"])
    return {
        "id": row.user_id,
        "email": row.email,
        "name": row.name,
        "defaultOrganization": row.default_organization_id,
        "key": {"id": row.key_id, "name": row.key_name, "organization": row.key_organization_id},
    }
