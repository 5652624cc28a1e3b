"""Invitations: admins invite an email address, the account with it accepts or declines.
Inviting tells nothing of accounts (the answer is the same with or without one), only the
invitee may answer, and accepting writes the membership and its audit event at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.models import Role
from tests.support.api import (
    API,
    AUDIT_EVENTS,
    assert_error,
    invitations_path,
    list_all,
    members_path,
)

MY_INVITATIONS = f"{API}/me/invitations"


def _invite(client, admin, organization_id, email, role="readwrite"):
    return client.post(invitations_path(organization_id), json={"email": email, "role": role}, headers=admin.headers)


def _answer(client, member, invitation_id, answer):
    return client.post(f"{API}/invitations/{invitation_id}/{answer}", headers=member.headers)


def _roles(client, member, organization_id) -> dict[str, str]:
    listed = list_all(client, member.headers, path=members_path(organization_id))
    return {item["user"]["id"]: item["role"] for item in listed}


def test_an_invitation_says_nothing_of_whether_an_account_has_the_address(client, world, team, admin):
    bob = world.member()
    for_bob = _invite(client, admin, team.id, bob.user.email)
    for_nobody = _invite(client, admin, team.id, "nobody@example.com")
    assert for_bob.status_code == for_nobody.status_code == 201
    shapes = [
        {name: value for name, value in answer.json().items() if name not in ("id", "email", "createdAt", "expiresAt")}
        for answer in (for_bob, for_nobody)
    ]
    assert shapes[0] == shapes[1] == {"organization": str(team.id), "role": "readwrite", "status": "pending"}
    assert str(bob.user.id) not in for_bob.text and "user" not in for_bob.json()
    invitation = for_bob.json()
    assert parse_rfc3339(invitation["expiresAt"]) - parse_rfc3339(invitation["createdAt"]) == timedelta(days=7)


def test_the_invitee_accepts_and_joins_with_the_role_and_an_audit_event(client, world, team, admin):
    bob = world.member()
    invitation = _invite(client, admin, team.id, bob.user.email, "readonly").json()
    assert [item["id"] for item in client.get(MY_INVITATIONS, headers=bob.headers).json()["data"]] == [invitation["id"]]
    accepted = _answer(client, bob, invitation["id"], "accept")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert _roles(client, bob, team.id) == {str(admin.user.id): "admin", str(bob.user.id): "readonly"}
    added = client.get(AUDIT_EVENTS, params={"type": "member.added"}, headers=admin.acting_on(team.id)).json()["data"]
    assert [(event["target"]["id"], event["actor"]["user"]) for event in added][0] == (
        str(bob.user.id),
        str(bob.user.id),
    )
    # Answered: neither listed as pending nor answerable again; the admin sees it accepted.
    assert client.get(MY_INVITATIONS, headers=bob.headers).json()["data"] == []
    assert_error(_answer(client, bob, invitation["id"], "decline"), 409, "invitation_not_pending")
    listed = client.get(invitations_path(team.id), headers=admin.headers).json()["data"]
    assert [(item["id"], item["status"]) for item in listed] == [(invitation["id"], "accepted")]


def test_only_the_invitee_may_answer_and_a_member_already_cannot_join_twice(client, world, team, admin):
    bob, eve = world.member(), world.member()
    invitation = _invite(client, admin, team.id, bob.user.email).json()
    # For anyone else the invitation does not exist.
    assert_error(_answer(client, eve, invitation["id"], "accept"), 404, "not_found")
    assert client.get(MY_INVITATIONS, headers=eve.headers).json()["data"] == []
    assert _roles(client, admin, team.id) == {str(admin.user.id): "admin"}
    member = world.member(of=[(team, Role.readonly)])
    again = _invite(client, admin, team.id, member.user.email).json()
    assert_error(_answer(client, member, again["id"], "accept"), 409, "already_member")


def test_a_declined_revoked_or_expired_invitation_cannot_be_accepted(client, world, team, admin, monkeypatch):
    bob = world.member()
    declined = _invite(client, admin, team.id, bob.user.email).json()
    assert _answer(client, bob, declined["id"], "decline").json()["status"] == "declined"
    revoked = _invite(client, admin, team.id, bob.user.email).json()
    assert client.delete(invitations_path(team.id, revoked["id"]), headers=admin.headers).status_code == 204
    assert_error(
        client.delete(invitations_path(team.id, revoked["id"]), headers=admin.headers), 409, "invitation_not_pending"
    )
    expiring = _invite(client, admin, team.id, bob.user.email).json()
    later = parse_rfc3339(expiring["expiresAt"])
    monkeypatch.setattr("sessions_api.models.invitations.utcnow", lambda: later)
    for invitation in (declined, revoked, expiring):
        assert_error(_answer(client, bob, invitation["id"], "accept"), 409, "invitation_not_pending")
    statuses = {
        item["id"]: item["status"]
        for item in client.get(invitations_path(team.id), headers=admin.headers).json()["data"]
    }
    assert statuses == {declined["id"]: "declined", revoked["id"]: "revoked", expiring["id"]: "expired"}
    assert _roles(client, admin, team.id) == {str(admin.user.id): "admin"}


def test_only_admins_invite_and_a_personal_organization_gains_no_members(client, world, team, admin):
    writer = world.member(of=[(team, Role.readwrite)])
    assert_error(_invite(client, writer, team.id, "someone@example.com"), 403, "forbidden")
    assert_error(client.get(invitations_path(team.id), headers=writer.headers), 403, "forbidden")
    assert_error(_invite(client, admin, admin.personal.id, "someone@example.com"), 422, "personal_organization")
    # Another organization's invitations are as if they did not exist.
    outsider = world.member()
    assert_error(client.get(invitations_path(team.id), headers=outsider.headers), 404, "not_found")


@pytest.mark.parametrize("email", ["two words@example.com", "no-at-sign", "nul\x00@example.com"])
def test_an_address_no_account_can_have_is_refused(client, team, admin, email):
    assert_error(_invite(client, admin, team.id, email), 400, "invalid_request")
