"""Who may call what: every operation, called by every kind of caller, on one team.

The callers: a member of the team with each role (unbound keys), a readwrite member whose
key is bound to the team, a user who is no member of it, and an admin of the team whose key
is bound to another organization. Operations that select the team with X-Organization-Id
refuse the last two with 403; those whose path names the team answer them 404.
"""

from __future__ import annotations

import uuid

import pytest

from sessions_api.models import Role, devices
from tests.support.api import (
    API,
    API_KEYS,
    AUDIT_EVENTS,
    DEVICES,
    ME,
    ORGANIZATIONS,
    SESSION_REQUESTS,
    SESSIONS,
    UNREACHABLE_HOOK,
    WEBHOOK_ENDPOINTS,
    assert_error,
    invitations_path,
    members_path,
    organization_path,
    revoke_path,
    webhook_path,
)
from tests.support.artifacts import Payload, attach

LOG = Payload(b"adb logcat\n")
CALLERS = ("admin", "readwrite", "readonly", "bound_to_team", "non_member", "bound_elsewhere")

# Each operation's status for each caller, in the order of CALLERS.
MATRIX = {
    "listSessions": (200, 200, 200, 200, 403, 403),
    "getSession": (200, 200, 200, 200, 403, 403),
    "createSession": (201, 201, 403, 201, 403, 403),
    "releaseSession": (200, 200, 403, 200, 403, 403),
    "updateSession": (200, 200, 403, 200, 403, 403),
    "listSessionRequests": (200, 200, 200, 200, 403, 403),
    "getSessionRequest": (200, 200, 200, 200, 403, 403),
    "cancelSessionRequest": (200, 200, 403, 200, 403, 403),
    "listDevices": (200, 200, 200, 200, 403, 403),
    "listOrganizations": (200, 200, 200, 200, 403, 403),
    "createOrganization": (201, 201, 201, 403, 403, 403),
    "getOrganization": (200, 200, 200, 200, 404, 404),
    "renameOrganization": (200, 403, 403, 403, 404, 404),
    "listMembers": (200, 200, 200, 200, 404, 404),
    "getUsage": (200, 403, 403, 403, 404, 404),
    "getConcurrency": (200, 200, 200, 200, 404, 404),
    "listInvitations": (200, 403, 403, 403, 404, 404),
    "createInvitation": (201, 403, 403, 403, 404, 404),
    "revokeInvitation": (204, 403, 403, 403, 404, 404),
    # An invitee answers with the key they sign in with (no organization selected); these
    # callers are all members of the team but the outsider, who joins.
    "listMyInvitations": (200, 200, 200, 200, 200, 200),
    "acceptInvitation": (409, 409, 409, 409, 200, 404),
    "declineInvitation": (200, 200, 200, 200, 200, 404),
    "changeMemberRole": (200, 403, 403, 403, 404, 404),
    "removeMember": (204, 403, 403, 403, 404, 404),
    "listApiKeys": (200, 200, 200, 200, 403, 403),
    "listApiKeys?scope=organization": (200, 403, 403, 403, 403, 403),
    "createApiKey": (201, 201, 201, 201, 403, 403),
    "revokeApiKey": (200, 404, 404, 404, 403, 403),
    "listAuditEvents": (200, 403, 403, 403, 403, 403),
    "getMe": (200, 200, 200, 200, 403, 403),
    "listWebhookEndpoints": (200, 403, 403, 403, 403, 403),
    "createWebhookEndpoint": (201, 403, 403, 403, 403, 403),
    "getWebhookEndpoint": (200, 403, 403, 403, 403, 403),
    "updateWebhookEndpoint": (200, 403, 403, 403, 403, 403),
    "rotateWebhookEndpointSecret": (200, 403, 403, 403, 403, 403),
    "testWebhookEndpoint": (200, 403, 403, 403, 403, 403),
    "listWebhookDeliveries": (200, 403, 403, 403, 403, 403),
    "deleteWebhookEndpoint": (204, 403, 403, 403, 403, 403),
    "listArtifacts": (200, 200, 200, 200, 403, 403),
    "getArtifact": (200, 200, 200, 200, 403, 403),
    "createArtifact": (201, 201, 403, 201, 403, 403),
    "completeArtifact": (200, 200, 403, 200, 403, 403),
    "deleteArtifact": (204, 204, 403, 204, 403, 403),
    "listEvents": (200, 200, 200, 200, 403, 403),
}


@pytest.fixture
def team(world):
    organization = world.organization("Team")
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    world.device(platform="ios", type="simulator", name="iPhone 15", os_version="18.2")
    # Offline: a start on Android waits in the queue.
    devices.set_disabled(world.device(platform="android", type="emulator", name="Pixel 9", os_version="15").id, True)
    return organization


def _caller(world, team, kind: str):
    if kind in ("admin", "readwrite", "readonly"):
        return world.member(of=[(team, Role(kind))])
    if kind == "bound_to_team":
        return world.member(of=[(team, Role.readwrite)], bound_to=team)
    if kind == "non_member":
        return world.member()
    other = world.organization("Elsewhere")
    return world.member(of=[(team, Role.admin), (other, Role.admin)], bound_to=other)


@pytest.mark.parametrize("kind", CALLERS)
def test_every_operation_answers_each_kind_of_caller_as_the_spec_says(client, world, team, kind):
    owner = world.member(of=[(team, Role.admin)])
    colleague = world.member(of=[(team, Role.readwrite)])
    leaver = world.member(of=[(team, Role.readonly)])
    colleagues_team_key = client.post(
        API_KEYS, json={"name": "ci", "organization": str(team.id)}, headers=colleague.headers
    ).json()
    session = client.post(SESSIONS, json={"platform": "ios"}, headers=owner.acting_on(team.id)).json()
    waiting = {"platform": "android", "queue": {"maxWaitSeconds": 600}}
    queued = client.post(SESSIONS, json=waiting, headers=owner.acting_on(team.id)).json()
    hook = {"url": UNREACHABLE_HOOK, "events": ["session.released"]}
    endpoint = client.post(WEBHOOK_ENDPOINTS, json=hook, headers=owner.acting_on(team.id)).json()
    artifacts = f"{SESSIONS}/{session['id']}/artifacts"
    artifact = attach(client, owner.acting_on(team.id), session["id"], LOG)
    caller = _caller(world, team, kind)
    headers = caller.acting_on(team.id)
    owners = owner.acting_on(team.id)
    pending = client.post(
        invitations_path(team.id), json={"email": "x@example.com", "role": "readonly"}, headers=owners
    )
    pending = pending.json()
    to_caller = {"email": caller.user.email, "role": "readonly"}
    to_accept = client.post(invitations_path(team.id), json=to_caller, headers=owners).json()

    def to_decline() -> dict:
        """A pending invitation of the caller's (one per address: the one to accept goes first)."""
        client.delete(invitations_path(team.id, to_accept["id"]), headers=owners)
        return client.post(invitations_path(team.id), json=to_caller, headers=owners).json()

    calls = {
        "listSessions": lambda: client.get(SESSIONS, headers=headers),
        "getSession": lambda: client.get(f"{SESSIONS}/{session['id']}", headers=headers),
        "createSession": lambda: client.post(SESSIONS, json={"platform": "ios"}, headers=headers),
        "releaseSession": lambda: client.post(f"{SESSIONS}/{session['id']}/release", headers=headers),
        "updateSession": lambda: client.patch(f"{SESSIONS}/{session['id']}", json={"build": "b"}, headers=headers),
        "listSessionRequests": lambda: client.get(SESSION_REQUESTS, headers=headers),
        "getSessionRequest": lambda: client.get(f"{SESSION_REQUESTS}/{queued['id']}", headers=headers),
        "cancelSessionRequest": lambda: client.post(f"{SESSION_REQUESTS}/{queued['id']}/cancel", headers=headers),
        "listDevices": lambda: client.get(DEVICES, headers=headers),
        "listOrganizations": lambda: client.get(ORGANIZATIONS, headers=headers),
        "createOrganization": lambda: client.post(ORGANIZATIONS, json={"name": "Spin-off"}, headers=headers),
        "getOrganization": lambda: client.get(organization_path(team.id), headers=caller.headers),
        "renameOrganization": lambda: client.patch(
            organization_path(team.id), json={"name": "Team B"}, headers=caller.headers
        ),
        "listMembers": lambda: client.get(members_path(team.id), headers=caller.headers),
        "getConcurrency": lambda: client.get(f"{organization_path(team.id)}/concurrency", headers=caller.headers),
        "getUsage": lambda: client.get(
            f"{organization_path(team.id)}/usage",
            params={"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
            headers=caller.headers,
        ),
        "changeMemberRole": lambda: client.patch(
            members_path(team.id, colleague.user.id), json={"role": "readonly"}, headers=caller.headers
        ),
        "removeMember": lambda: client.delete(members_path(team.id, leaver.user.id), headers=caller.headers),
        "listApiKeys": lambda: client.get(API_KEYS, headers=headers),
        "listApiKeys?scope=organization": lambda: client.get(
            API_KEYS, params={"scope": "organization"}, headers=headers
        ),
        "createApiKey": lambda: client.post(API_KEYS, json={"name": "mine"}, headers=headers),
        "revokeApiKey": lambda: client.post(revoke_path(colleagues_team_key["id"]), headers=headers),
        "listAuditEvents": lambda: client.get(AUDIT_EVENTS, headers=headers),
        "getMe": lambda: client.get(ME, headers=headers),
        "listWebhookEndpoints": lambda: client.get(WEBHOOK_ENDPOINTS, headers=headers),
        "createWebhookEndpoint": lambda: client.post(WEBHOOK_ENDPOINTS, json=hook, headers=headers),
        "getWebhookEndpoint": lambda: client.get(webhook_path(endpoint["id"]), headers=headers),
        "updateWebhookEndpoint": lambda: client.patch(
            webhook_path(endpoint["id"]), json={"enabled": False}, headers=headers
        ),
        "rotateWebhookEndpointSecret": lambda: client.post(
            webhook_path(endpoint["id"], "rotate-secret"), headers=headers
        ),
        "testWebhookEndpoint": lambda: client.post(webhook_path(endpoint["id"], "test"), headers=headers),
        "listWebhookDeliveries": lambda: client.get(webhook_path(endpoint["id"], "deliveries"), headers=headers),
        "deleteWebhookEndpoint": lambda: client.delete(webhook_path(endpoint["id"]), headers=headers),
        "listArtifacts": lambda: client.get(artifacts, headers=headers),
        "getArtifact": lambda: client.get(f"{artifacts}/{artifact['id']}", headers=headers),
        "createArtifact": lambda: client.post(artifacts, json=LOG.declared(), headers=headers),
        "completeArtifact": lambda: client.post(f"{artifacts}/{artifact['id']}/complete", headers=headers),
        "deleteArtifact": lambda: client.delete(f"{artifacts}/{artifact['id']}", headers=headers),
        "listEvents": lambda: client.get(f"{API}/events", headers=headers),
        # Last: accepting makes the outsider a member, which would change the answers above.
        "listInvitations": lambda: client.get(invitations_path(team.id), headers=caller.headers),
        "createInvitation": lambda: client.post(
            invitations_path(team.id),
            json={"email": "newcomer@example.com", "role": "readonly"},
            headers=caller.headers,
        ),
        "revokeInvitation": lambda: client.delete(invitations_path(team.id, pending["id"]), headers=caller.headers),
        "listMyInvitations": lambda: client.get(f"{API}/me/invitations", headers=caller.headers),
        "acceptInvitation": lambda: client.post(f"{API}/invitations/{to_accept['id']}/accept", headers=caller.headers),
        "declineInvitation": lambda: client.post(
            f"{API}/invitations/{to_decline()['id']}/decline", headers=caller.headers
        ),
    }
    got = {name: call().status_code for name, call in calls.items()}
    column = CALLERS.index(kind)
    assert got == {name: statuses[column] for name, statuses in MATRIX.items()}


def test_the_matrix_covers_every_operation_of_the_spec():
    from tests.contract.test_spec import STATUSES

    assert {name.split("?")[0] for name in MATRIX} == set(STATUSES)


def test_a_member_may_leave_by_themselves_whatever_their_role(client, world, team):
    owner = world.member(of=[(team, Role.admin)])
    for role in (Role.readonly, Role.readwrite):
        member = world.member(of=[(team, role)])
        assert client.delete(members_path(team.id, member.user.id), headers=member.headers).status_code == 204
    others = client.get(members_path(team.id), headers=owner.headers).json()["data"]
    assert [item["user"]["id"] for item in others] == [str(owner.user.id)]


def test_path_operations_ignore_the_organization_header(client, world, team):
    admin = world.member(of=[(team, Role.admin)])
    outsider_org = world.organization("Not theirs")
    # The header names an organization the caller is no member of: the path's is used.
    headers = admin.acting_on(outsider_org.id)
    assert client.get(organization_path(team.id), headers=headers).json()["id"] == str(team.id)
    # And a header naming the team does not open another organization's path.
    assert client.get(organization_path(outsider_org.id), headers=admin.acting_on(team.id)).status_code == 404


def test_an_organization_not_the_callers_is_indistinguishable_from_a_missing_one(client, world, team):
    owner = world.member(of=[(team, Role.admin)])
    outsider = world.member()
    bound_elsewhere = _caller(world, team, "bound_elsewhere")
    missing = uuid.uuid4()
    cases = [
        ("GET", organization_path, None),
        ("PATCH", organization_path, {"name": "Mine now"}),
        ("GET", members_path, None),
        ("GET", invitations_path, None),
        ("POST", invitations_path, {"email": outsider.user.email, "role": "admin"}),
        ("PATCH", lambda org: members_path(org, owner.user.id), {"role": "readonly"}),
        ("DELETE", lambda org: members_path(org, owner.user.id), None),
    ]
    for caller in (outsider, bound_elsewhere):
        for method, path, body in cases:
            foreign = client.request(method, path(team.id), json=body, headers=caller.headers)
            absent = client.request(method, path(missing), json=body, headers=caller.headers)
            assert_error(foreign, 404, "not_found")
            assert foreign.content == absent.content, (method, path(team.id))
    listed = client.get(members_path(team.id), headers=owner.headers).json()["data"]
    assert {(item["user"]["id"], item["role"]) for item in listed} == {
        (str(owner.user.id), "admin"),
        (str(bound_elsewhere.user.id), "admin"),
    }
    assert client.get(organization_path(team.id), headers=owner.headers).json()["name"] == "Team"
