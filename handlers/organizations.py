"""Handlers of the Organizations tag.

Under /organizations/{organizationId} the security handler has made the path's organization
the one the request acts on (the principal's), so handlers act on that one.
"""

from __future__ import annotations

from typing import Any

from sessions_api.handlers.sessions import API_BASE
from sessions_api.models import plans, tenancy
from sessions_api.models.tenancy import OrganizationRow


def listOrganizations(token_info: dict[str, Any]) -> dict[str, Any]:
    principal = token_info["principal"]
    rows = tenancy.organizations_of(principal.user_id, only=principal.bound_organization_id)
    return {"object": "list", "data": [organization_json(row) for row in rows]}


def createOrganization(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    organization = organization_json(tenancy.create_organization_for(token_info["principal"], body["name"]))
    return organization, 201, {"Location": f"{API_BASE}/organizations/{organization['id']}"}


def getOrganization(organizationId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return organization_json(tenancy.get_organization(token_info["principal"]))


def renameOrganization(organizationId: str, body: dict[str, Any], token_info: dict[str, Any]) -> dict[str, Any]:
    return organization_json(tenancy.rename_organization(token_info["principal"], body["name"]))


def getConcurrency(organizationId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    view = plans.concurrency(token_info["principal"].organization_id)
    return {
        "live": view.live,
        "queued": view.queued,
        "maxLiveSessions": view.plan.max_live_sessions,
        "maxQueuedSessions": view.plan.max_queued_sessions,
        "byPlatform": [
            {"platform": row.platform, "live": row.live, "queued": row.queued, "available": row.available}
            for row in view.by_platform
        ],
    }


def organization_json(row: OrganizationRow) -> dict[str, Any]:
    """An organization as a member sees it, plan included (getConcurrency shows it to every
    member too: what a start may ask for is no secret from those who start)."""
    return {
        "id": str(row.id),
        "name": row.name,
        "personal": row.personal,
        "role": row.role.value,
        "plan": {
            "maxLiveSessions": row.max_live_sessions,
            "maxQueuedSessions": row.max_queued_sessions,
            "maxStorageBytes": row.max_storage_bytes,
            "storedBytes": row.stored_bytes,
            "artifactRetentionDays": row.artifact_retention_days,
        },
    }
