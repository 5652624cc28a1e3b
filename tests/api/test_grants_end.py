"""Every grant ends with its maker's and its holder's right (docs/contributors/security.md):
an invitation with the admin who made it and with its invitee's membership; a queued start
with its member's right to start and with its key, checked again when the queue would start
it; an artifact's upload and download URLs with their holder's key and membership. Each end
is in the audit log with its reason, and a cancelled start is a webhook event."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role
from tests.support.api import (
    API,
    API_KEYS,
    AUDIT_EVENTS,
    SESSION_REQUESTS,
    SESSIONS,
    assert_error,
    invitations_path,
    list_all,
    members_path,
    revoke_path,
)
from tests.support.artifacts import Payload, attach, fetch, send

MY_INVITATIONS = f"{API}/me/invitations"
# How long a test waits for the queue's rounds (every 50 ms here) to act.
ROUNDS_WAIT_SECONDS = 5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(queue_poll_seconds=0.05, long_poll_check_seconds=0.02, max_pending_invitations=3)


@pytest.fixture
def second_admin(world, team):
    return world.member(of=[(team, Role.admin)])


@pytest.fixture
def iphone(world):
    return world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")


def _invite(client, admin, organization_id, email, role="admin"):
    return client.post(invitations_path(organization_id), json={"email": email, "role": role}, headers=admin.headers)


def _invitation_status(client, admin, organization_id, invitation_id):
    listed = list_all(client, admin.headers, path=invitations_path(organization_id))
    return next(item["status"] for item in listed if item["id"] == invitation_id)


def _audit(client, admin, organization_id, event_type):
    query = {"type": event_type}
    return client.get(AUDIT_EVENTS, params=query, headers=admin.acting_on(organization_id)).json()["data"]


def _reasons(events):
    return sorted((event["target"]["id"], event["data"]["after"]["reason"]) for event in events)


# --- invitations -----------------------------------------------------------------------------


def test_an_admin_removed_takes_their_pending_invitations_with_them(client, world, team, admin, second_admin):
    outsider = world.member()
    invitation = _invite(client, admin, team.id, outsider.user.email).json()
    removed = client.delete(members_path(team.id, admin.user.id), headers=second_admin.headers)
    assert removed.status_code == 204
    assert _invitation_status(client, second_admin, team.id, invitation["id"]) == "revoked"
    assert_error(client.post(f"{API}/invitations/{invitation['id']}/accept", headers=outsider.headers), 409,
                 "invitation_not_pending")  # fmt: skip
    events = _audit(client, second_admin, team.id, "invitation.revoked")
    assert _reasons(events) == [(invitation["id"], "maker_removed")]
    assert events[0]["actor"]["user"] == str(second_admin.user.id)


def test_an_admin_demoted_takes_their_pending_invitations_with_them(client, world, team, admin, second_admin):
    invitation = _invite(client, admin, team.id, world.member().user.email).json()
    other = _invite(client, second_admin, team.id, world.member().user.email).json()
    demoted = client.patch(members_path(team.id, admin.user.id), json={"role": "readwrite"},
                           headers=second_admin.headers)  # fmt: skip
    assert demoted.status_code == 200, demoted.text
    assert _invitation_status(client, second_admin, team.id, invitation["id"]) == "revoked"
    assert _invitation_status(client, second_admin, team.id, other["id"]) == "pending"  # not theirs
    assert _reasons(_audit(client, second_admin, team.id, "invitation.revoked")) == [
        (invitation["id"], "maker_demoted")
    ]


def test_a_member_removed_loses_the_invitations_addressed_to_them_there(client, world, team, admin):
    member = world.member(of=[(team, Role.readonly)])
    invitation = _invite(client, admin, team.id, member.user.email).json()
    elsewhere = world.organization("Elsewhere")
    elsewhere_admin = world.member(of=[(elsewhere, Role.admin)])
    kept = _invite(client, elsewhere_admin, elsewhere.id, member.user.email).json()
    assert client.delete(members_path(team.id, member.user.id), headers=admin.headers).status_code == 204
    assert _invitation_status(client, admin, team.id, invitation["id"]) == "revoked"
    assert _invitation_status(client, elsewhere_admin, elsewhere.id, kept["id"]) == "pending"
    assert _reasons(_audit(client, admin, team.id, "invitation.revoked")) == [(invitation["id"], "invitee_removed")]


def test_an_admins_revocation_is_audited(client, world, team, admin):
    invitation = _invite(client, admin, team.id, world.member().user.email).json()
    assert client.delete(invitations_path(team.id, invitation["id"]), headers=admin.headers).status_code == 204
    assert _reasons(_audit(client, admin, team.id, "invitation.revoked")) == [(invitation["id"], "admin")]


def test_one_pending_invitation_per_address_and_a_cap_per_organization(client, world, team, admin):
    email = world.member().user.email
    first = _invite(client, admin, team.id, email).json()
    assert_error(_invite(client, admin, team.id, email, "readonly"), 409, "already_invited")
    assert client.delete(invitations_path(team.id, first["id"]), headers=admin.headers).status_code == 204
    assert _invite(client, admin, team.id, email).status_code == 201  # revoked: no longer pending
    for n in range(2):
        assert _invite(client, admin, team.id, f"more-{n}@example.com").status_code == 201
    refused = assert_error(_invite(client, admin, team.id, "one-too-many@example.com"), 409, "limit_reached")
    assert "3 pending invitations" in refused["error"]["message"]


def test_a_key_bound_to_an_organization_sees_and_answers_only_its_invitations(client, world, team, admin):
    home = world.organization("Home")
    home_admin = world.member(of=[(home, Role.admin)])
    invitee = world.member(of=[(home, Role.readonly)])
    to_team = _invite(client, admin, team.id, invitee.user.email, "readonly").json()
    to_home = _invite(client, home_admin, home.id, invitee.user.email, "readwrite").json()
    bound = client.post(API_KEYS, json={"name": "bound", "organization": str(home.id)}, headers=invitee.headers)
    assert bound.status_code == 201, bound.text
    bound_headers = {"Authorization": f"Bearer {bound.json()['secret']}"}
    listed = client.get(MY_INVITATIONS, headers=bound_headers).json()["data"]
    assert [item["id"] for item in listed] == [to_home["id"]]
    for answer in ("accept", "decline"):
        assert_error(client.post(f"{API}/invitations/{to_team['id']}/{answer}", headers=bound_headers), 404,
                     "not_found")  # fmt: skip
    assert _invitation_status(client, admin, team.id, to_team["id"]) == "pending"
    both = client.get(MY_INVITATIONS, headers=invitee.headers).json()["data"]
    assert {item["id"] for item in both} == {to_team["id"], to_home["id"]}
    assert client.post(f"{API}/invitations/{to_team['id']}/accept", headers=invitee.headers).status_code == 200


# --- queued starts ---------------------------------------------------------------------------


def _queue_behind_a_busy_device(client, holder, member, team, headers=None):
    """The team's only device held by `holder`; `member` queues a start. Returns (session id of
    the holder, the request's id)."""
    held = client.post(SESSIONS, json={"platform": "ios"}, headers=holder.acting_on(team.id))
    assert held.status_code == 201, held.text
    queued = client.post(
        SESSIONS,
        json={"platform": "ios", "queue": {"maxWaitSeconds": 600}},
        headers=headers or member.acting_on(team.id),
    )
    assert queued.status_code == 202, queued.text
    return held.json()["id"], queued.json()["id"]


def _request(client, admin, team, request_id):
    answer = client.get(f"{SESSION_REQUESTS}/{request_id}", headers=admin.acting_on(team.id))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _until_cancelled(client, admin, team, request_id):
    deadline = time.monotonic() + ROUNDS_WAIT_SECONDS
    while time.monotonic() < deadline:
        request = _request(client, admin, team, request_id)
        if request["status"] != "queued":
            return request
        time.sleep(0.02)
    return _request(client, admin, team, request_id)


def _free_the_device_and_check_nothing_starts(client, admin, team, session_id, request_id):
    released = client.post(f"{SESSIONS}/{session_id}/release", headers=admin.acting_on(team.id))
    assert released.status_code == 200
    request = _until_cancelled(client, admin, team, request_id)
    assert request["status"] == "cancelled" and request["session"] is None, request
    live = client.get(SESSIONS, params={"status": "live"}, headers=admin.acting_on(team.id)).json()["data"]
    assert live == []
    return request


def test_a_removed_members_queued_start_is_cancelled_with_the_removal(client, team, admin, writer, iphone):
    session_id, request_id = _queue_behind_a_busy_device(client, admin, writer, team)
    assert client.delete(members_path(team.id, writer.user.id), headers=admin.headers).status_code == 204
    request = _request(client, admin, team, request_id)  # at once: in the removal's transaction
    assert (request["status"], request["cancelReason"], request["reason"]) == ("cancelled", "member_removed", "device")
    _free_the_device_and_check_nothing_starts(client, admin, team, session_id, request_id)
    events = _audit(client, admin, team.id, "session.queue_cancelled")
    assert _reasons(events) == [(request_id, "member_removed")]
    assert events[0]["target"]["kind"] == "session_request"


def test_a_member_made_readonly_loses_their_queued_start(client, team, admin, writer, iphone):
    session_id, request_id = _queue_behind_a_busy_device(client, admin, writer, team)
    demoted = client.patch(members_path(team.id, writer.user.id), json={"role": "readonly"}, headers=admin.headers)
    assert demoted.status_code == 200
    assert _request(client, admin, team, request_id)["cancelReason"] == "role_changed"
    _free_the_device_and_check_nothing_starts(client, admin, team, session_id, request_id)


def test_a_queued_start_ends_with_the_key_that_made_it(client, team, admin, writer, iphone):
    made = client.post(API_KEYS, json={"name": "ci", "organization": str(team.id)}, headers=writer.headers).json()
    key_headers = {"Authorization": f"Bearer {made['secret']}"}
    session_id, request_id = _queue_behind_a_busy_device(client, admin, writer, team, headers=key_headers)
    assert client.post(revoke_path(made["id"]), headers=writer.headers).status_code == 200
    request = _free_the_device_and_check_nothing_starts(client, admin, team, session_id, request_id)
    assert request["cancelReason"] == "key_revoked"
    assert _audit(client, admin, team.id, "session.queue_cancelled")[0]["origin"] == "system"


def test_a_queued_start_whose_key_expired_is_cancelled_when_the_queue_would_start_it(
    client, team, admin, writer, iphone
):
    expires_at = format_utc(utcnow() + timedelta(seconds=1))
    made = client.post(API_KEYS, json={"name": "short", "expiresAt": expires_at}, headers=writer.headers)
    assert made.status_code == 201, made.text
    key_headers = {**writer.acting_on(team.id), "Authorization": f"Bearer {made.json()['secret']}"}
    session_id, request_id = _queue_behind_a_busy_device(client, admin, writer, team, headers=key_headers)
    time.sleep(1.1)  # nothing happens at the expiry itself: the queue checks when it would start
    request = _free_the_device_and_check_nothing_starts(client, admin, team, session_id, request_id)
    assert request["cancelReason"] == "key_expired"


def test_a_callers_cancellation_says_so(client, team, admin, writer, iphone):
    _, request_id = _queue_behind_a_busy_device(client, admin, writer, team)
    cancelled = client.post(f"{SESSION_REQUESTS}/{request_id}/cancel", headers=writer.acting_on(team.id)).json()
    assert (cancelled["status"], cancelled["cancelReason"]) == ("cancelled", "caller")
    assert _reasons(_audit(client, admin, team.id, "session.queue_cancelled")) == [(request_id, "caller")]


# --- an artifact's URLs, served by this server's file store -----------------------------------

ARTIFACT_LOG = Payload(b"E/AndroidRuntime: FATAL EXCEPTION: main\n" * 10)


def test_a_download_url_ends_with_its_holders_membership(client, world, team, admin, writer, session_id):
    reader = world.member(of=[(team, Role.readonly)])
    artifact = attach(client, writer.acting_on(team.id), session_id, ARTIFACT_LOG)
    path = f"{API}/sessions/{session_id}/artifacts/{artifact['id']}"
    url = client.get(path, headers=reader.acting_on(team.id)).json()["download"]["url"]
    assert fetch(client, url).content == ARTIFACT_LOG.data
    assert client.delete(members_path(team.id, reader.user.id), headers=admin.headers).status_code == 204
    refused = fetch(client, url)  # long before the URL's expiry
    assert refused.status_code == 403 and "grant has ended" in refused.json()["error"]["message"]


def test_an_upload_url_ends_with_its_key_and_with_its_holders_right_to_write(client, team, admin, writer, session_id):
    made = client.post(API_KEYS, json={"name": "ci", "organization": str(team.id)}, headers=writer.headers).json()
    key_headers = {"Authorization": f"Bearer {made['secret']}"}
    declare = f"{API}/sessions/{session_id}/artifacts"
    by_key = client.post(declare, json=ARTIFACT_LOG.declared(), headers=key_headers).json()["upload"]
    by_member = client.post(declare, json=ARTIFACT_LOG.declared(), headers=writer.acting_on(team.id)).json()["upload"]
    assert client.post(revoke_path(made["id"]), headers=writer.headers).status_code == 200
    assert_error(send(client, by_key, ARTIFACT_LOG.data), 403, "forbidden")
    demoted = client.patch(members_path(team.id, writer.user.id), json={"role": "readonly"}, headers=admin.headers)
    assert demoted.status_code == 200
    assert_error(send(client, by_member, ARTIFACT_LOG.data), 403, "forbidden")
