"""Handlers of the Organizations tag."""

from __future__ import annotations

from typing import Any

from sessions_api.models import tenancy


def listOrganizations(token_info: dict[str, Any]) -> dict[str, Any]:
    principal = token_info["principal"]
    rows = tenancy.organizations_of(principal.user_id, only=principal.bound_organization_id)
    return {
        "object": "list",
        "data": [
            {"id": str(row.id), "name": row.name, "personal": row.personal, "role": row.role.value} for row in rows
        ],
    }
