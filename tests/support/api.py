"""Talking to the API in tests: its paths, and the checks every test makes of answers."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

API = "/api/v1"
SESSIONS = f"{API}/sessions"
SESSION_REQUESTS = f"{API}/session-requests"
DEVICES = f"{API}/devices"
ORGANIZATIONS = f"{API}/organizations"
API_KEYS = f"{API}/api-keys"
AUDIT_EVENTS = f"{API}/audit-events"
ME = f"{API}/me"
WEBHOOK_ENDPOINTS = f"{API}/webhook-endpoints"
# A host that never resolves (RFC 6761): endpoints in in-process tests never reach anyone.
UNREACHABLE_HOOK = "https://hooks.example.invalid/sessions"


def organization_path(organization_id: object) -> str:
    return f"{ORGANIZATIONS}/{organization_id}"


def members_path(organization_id: object, user_id: object | None = None) -> str:
    members = f"{organization_path(organization_id)}/members"
    return members if user_id is None else f"{members}/{user_id}"


def webhook_path(endpoint_id: object, action: str | None = None) -> str:
    """An endpoint's path, or one of its actions' (`rotate-secret`, `test`, `deliveries`)."""
    path = f"{WEBHOOK_ENDPOINTS}/{endpoint_id}"
    return path if action is None else f"{path}/{action}"


def revoke_path(key_id: object) -> str:
    return f"{API_KEYS}/{key_id}/revoke"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """`response` is the one error envelope with this status and code, and nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body


def list_all(
    client: Any, headers: dict[str, str], limit: int = 100, path: str = SESSIONS, **params: Any
) -> list[dict[str, Any]]:
    """Follow nextCursor from the first page to the last; returns every item seen (of the
    sessions list unless `path` names another)."""
    seen: list[dict[str, Any]] = []
    query = {"limit": limit, **params}
    for _ in range(100_000):
        response = client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["data"])
        if "nextCursor" not in body:
            return seen
        assert body["data"], "a page with a nextCursor must not be empty"
        query["before"] = body["nextCursor"]
    raise AssertionError("pagination did not end")


def invitations_path(organization_id: object, invitation_id: object | None = None) -> str:
    path = f"{API}/organizations/{organization_id}/invitations"
    return path if invitation_id is None else f"{path}/{invitation_id}"


def join(client: Any, admin_headers: dict[str, str], organization_id: object, member: Any, role: str) -> dict[str, Any]:
    """`member` joins the organization as the API has it: an admin invites their email with
    `role`, they accept. Returns the accepted invitation."""
    invited = client.post(
        invitations_path(organization_id), json={"email": member.user.email, "role": role}, headers=admin_headers
    )
    assert invited.status_code == 201, invited.text
    accepted = client.post(f"{API}/invitations/{invited.json()['id']}/accept", headers=member.headers)
    assert accepted.status_code == 200, accepted.text
    return accepted.json()


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def bodies_to_send(event_type: str) -> list[dict[str, Any]]:
    """The webhook bodies the outbox holds for `event_type`, as an attempt would send them."""
    from sessions_api.core import db
    from sessions_api.core.timestamps import utcnow
    from sessions_api.models import webhooks
    from sessions_api.models.tables import WebhookDelivery

    with db.reading() as conn:
        claims = webhooks.claims(conn=conn, where=WebhookDelivery.event_type == event_type, now=utcnow())
    return [json.loads(claim.payload) for claim in claims if claim.payload is not None]
