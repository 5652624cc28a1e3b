"""API keys managed through the API: created, used at once, listed, revoked, expired."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from sessions_api.core.timestamps import format_utc, parse_rfc3339, utcnow
from sessions_api.models import Role
from tests.support.api import (
    API_KEYS,
    AUDIT_EVENTS,
    ME,
    SESSIONS,
    assert_error,
    join,
    list_all,
    members_path,
    revoke_path,
)


@pytest.fixture
def team(world):
    return world.organization("Team")


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _create(client, member, **body):
    response = client.post(API_KEYS, json={"name": "ci", **body}, headers=member.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_key_created_through_the_api_works_at_once_and_fails_once_revoked(client, world, team):
    alice = world.member(of=[(team, Role.readwrite)])
    key = _create(client, alice, organization=str(team.id))
    assert key["secret"].startswith(key["prefix"] + "_") and key["prefix"].startswith("sapi_")
    assert key["organization"] == str(team.id) and key["user"] == str(alice.user.id)
    assert key["revokedAt"] is None and key["expiresAt"] is None
    me = client.get(ME, headers=_bearer(key["secret"])).json()
    assert me["key"] == {"id": key["id"], "name": "ci", "organization": str(team.id)}
    # A bound key acts on its organization without a header.
    assert client.get(SESSIONS, headers=_bearer(key["secret"])).status_code == 200

    revoked = client.post(revoke_path(key["id"]), headers=alice.headers)
    assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None
    assert_error(client.get(ME, headers=_bearer(key["secret"])), 401, "unauthenticated")
    # Revoking again keeps the first instant.
    again = client.post(revoke_path(key["id"]), headers=alice.headers)
    assert again.status_code == 200 and again.json() == revoked.json()


def test_a_key_can_revoke_itself(client, world):
    alice = world.member()
    assert client.post(revoke_path(alice.key_id), headers=alice.headers).status_code == 200
    assert_error(client.get(ME, headers=alice.headers), 401, "unauthenticated")


def test_a_key_fails_from_its_expiry_on(client, world, monkeypatch):
    alice = world.member()
    expires_at = utcnow() + timedelta(minutes=5)
    key = _create(client, alice, expiresAt=format_utc(expires_at).replace("Z", "+00:00"))
    assert parse_rfc3339(key["expiresAt"]) == expires_at
    assert client.get(ME, headers=_bearer(key["secret"])).status_code == 200
    # Five minutes later, to the microsecond.
    monkeypatch.setattr("sessions_api.models.api_keys.utcnow", lambda: expires_at)
    assert_error(client.get(ME, headers=_bearer(key["secret"])), 401, "unauthenticated")
    assert client.get(ME, headers=alice.headers).status_code == 200  # a key without expiry goes on


def test_a_key_cannot_outlive_the_key_that_made_it(client, world, monkeypatch):
    alice = world.member()
    maker_expires = utcnow() + timedelta(seconds=30)
    maker = _create(client, alice, expiresAt=format_utc(maker_expires))
    made_with_maker = {"name": "child"}
    # No expiry asked, or a later one: the child expires with its maker.
    forever = client.post(API_KEYS, json=made_with_maker, headers=_bearer(maker["secret"])).json()
    later = {**made_with_maker, "expiresAt": format_utc(maker_expires + timedelta(days=365))}
    longer = client.post(API_KEYS, json=later, headers=_bearer(maker["secret"])).json()
    assert parse_rfc3339(forever["expiresAt"]) == maker_expires == parse_rfc3339(longer["expiresAt"])
    # An earlier expiry stays the child's own.
    sooner_at = maker_expires - timedelta(seconds=10)
    sooner = client.post(
        API_KEYS, json={**made_with_maker, "expiresAt": format_utc(sooner_at)}, headers=_bearer(maker["secret"])
    )
    assert parse_rfc3339(sooner.json()["expiresAt"]) == sooner_at
    # Once the maker has expired, so has every key it made; the user's own key goes on.
    monkeypatch.setattr("sessions_api.models.api_keys.utcnow", lambda: maker_expires)
    for key in (maker, forever, longer):
        assert_error(client.get(ME, headers=_bearer(key["secret"])), 401, "unauthenticated")
    assert client.get(ME, headers=alice.headers).status_code == 200


def test_revoking_a_key_leaves_the_keys_it_made_which_the_audit_log_traces(client, world):
    alice = world.member()
    maker = _create(client, alice)
    child = client.post(API_KEYS, json={"name": "child"}, headers=_bearer(maker["secret"])).json()
    assert client.post(revoke_path(maker["id"]), headers=alice.headers).status_code == 200
    assert client.get(ME, headers=_bearer(child["secret"])).status_code == 200
    created = client.get(AUDIT_EVENTS, params={"type": "key.created"}, headers=alice.headers).json()["data"]
    (event,) = [event for event in created if event["target"]["id"] == child["id"]]
    assert event["actor"]["key"] == maker["id"]


def test_an_expiry_in_the_past_is_refused(client, world):
    alice = world.member()
    past = format_utc(utcnow() - timedelta(seconds=1))
    assert_error(
        client.post(API_KEYS, json={"name": "old", "expiresAt": past}, headers=alice.headers), 422, "expiry_in_past"
    )
    bad = client.post(API_KEYS, json={"name": "x", "expiresAt": "tomorrow"}, headers=alice.headers)
    assert_error(bad, 400, "invalid_request")
    assert [item["id"] for item in list_all(client, alice.headers, path=API_KEYS)] == [str(alice.key_id)]


def test_binding_takes_membership_and_a_bound_caller_stays_in_its_organization(client, world, team):
    alice = world.member(of=[(team, Role.readonly)])
    foreign = world.organization("Not Alice's")
    refused = client.post(API_KEYS, json={"name": "x", "organization": str(foreign.id)}, headers=alice.headers)
    missing = client.post(API_KEYS, json={"name": "x", "organization": str(uuid.uuid4())}, headers=alice.headers)
    assert_error(refused, 403, "forbidden")
    assert refused.content == missing.content

    bound = world.member(of=[(team, Role.admin)], bound_to=team)
    made = _create(client, bound)  # no organization: the caller's own
    assert made["organization"] == str(team.id)
    escape = client.post(API_KEYS, json={"name": "x", "organization": str(bound.personal.id)}, headers=bound.headers)
    assert_error(escape, 403, "forbidden")
    # Another member's key, even bound to their shared team, is not Alice's (a readonly member).
    assert_error(client.post(revoke_path(made["id"]), headers=alice.acting_on(team.id)), 404, "not_found")


def test_the_list_shows_own_keys_newest_first_and_never_a_secret(client, world, team):
    alice = world.member(of=[(team, Role.admin)])
    made = [_create(client, alice, name=f"key {n}") for n in range(5)]
    bound = _create(client, alice, name="bound", organization=str(team.id))
    world.member(of=[(team, Role.readwrite)])  # someone else's keys stay out
    listed = list_all(client, alice.headers, limit=2, path=API_KEYS)
    assert [item["id"] for item in listed] == [bound["id"], *(key["id"] for key in reversed(made)), str(alice.key_id)]
    secrets = [key["secret"] for key in (*made, bound)] + [alice.secret]
    responses = [
        client.get(API_KEYS, headers=alice.headers),
        client.get(API_KEYS, params={"scope": "organization"}, headers=alice.acting_on(team.id)),
        client.post(revoke_path(made[0]["id"]), headers=alice.headers),
        client.get(ME, headers=alice.headers),
    ]
    for response in responses:
        assert response.status_code == 200
        assert "secret" not in response.text and not any(secret in response.text for secret in secrets)
        assert "sapi_" not in response.text.replace('"prefix":"sapi_', "")


def test_a_bound_caller_lists_only_its_organizations_keys(client, world, team):
    alice = world.member(of=[(team, Role.readwrite)])
    in_team = _create(client, alice, organization=str(team.id))
    _create(client, alice, name="everywhere")
    listed = client.get(API_KEYS, headers=_bearer(in_team["secret"])).json()["data"]
    assert [item["id"] for item in listed] == [in_team["id"]]


def test_admins_see_and_revoke_the_keys_bound_to_their_organization_only(client, world, team):
    admin = world.member(of=[(team, Role.admin)])
    writer = world.member(of=[(team, Role.readwrite)])
    team_key = _create(client, writer, organization=str(team.id))
    own_key = _create(client, writer, name="personal use")
    other = world.organization("Other")
    stranger = world.member(of=[(other, Role.admin)])
    foreign_key = _create(client, stranger, organization=str(other.id))

    scoped = client.get(API_KEYS, params={"scope": "organization"}, headers=admin.acting_on(team.id)).json()
    assert [item["id"] for item in scoped["data"]] == [team_key["id"]]
    # Not bound to the team: another user's key is not the admin's to see.
    for key in (own_key, foreign_key):
        answer = client.post(revoke_path(key["id"]), headers=admin.acting_on(team.id))
        assert_error(answer, 404, "not_found")
        assert answer.content == client.post(revoke_path(uuid.uuid4()), headers=admin.acting_on(team.id)).content
    # Acting on their Personal organization, the admin is not the team's admin.
    assert_error(client.post(revoke_path(team_key["id"]), headers=admin.headers), 404, "not_found")
    assert client.post(revoke_path(team_key["id"]), headers=admin.acting_on(team.id)).status_code == 200
    assert_error(client.get(ME, headers=_bearer(team_key["secret"])), 401, "unauthenticated")
    assert client.get(ME, headers=_bearer(own_key["secret"])).status_code == 200
    listing = client.get(API_KEYS, params={"scope": "organization"}, headers=writer.acting_on(team.id))
    assert_error(listing, 403, "forbidden")


def test_a_bound_key_stops_when_its_user_leaves_the_organization(client, world, team):
    admin = world.member(of=[(team, Role.admin)])
    writer = world.member(of=[(team, Role.readwrite)])
    team_key = _create(client, writer, organization=str(team.id))
    unbound = _create(client, writer, name="everywhere")
    assert client.get(SESSIONS, headers=_bearer(team_key["secret"])).status_code == 200
    removed = client.delete(members_path(team.id, writer.user.id), headers=admin.headers)
    assert removed.status_code == 204
    assert_error(client.get(SESSIONS, headers=_bearer(team_key["secret"])), 401, "unauthenticated")
    assert client.get(SESSIONS, headers=_bearer(unbound["secret"])).status_code == 200
    # Revoked with the membership: joining again does not bring the key back.
    assert join(client, admin.headers, team.id, writer, "readwrite")["status"] == "accepted"
    assert_error(client.get(SESSIONS, headers=_bearer(team_key["secret"])), 401, "unauthenticated")
    (shown,) = [item for item in list_all(client, writer.headers, path=API_KEYS) if item["id"] == team_key["id"]]
    assert shown["revokedAt"] is not None


def test_keys_page_exactly(client, world):
    alice = world.member()
    made = {_create(client, alice, name=f"k{n}")["id"] for n in range(7)} | {str(alice.key_id)}
    for limit in (1, 3, 8):
        seen = [item["id"] for item in list_all(client, alice.headers, limit=limit, path=API_KEYS)]
        assert len(seen) == len(set(seen)) == 8 and set(seen) == made


def test_answers_that_carry_a_secret_are_never_stored_by_a_cache(client, world):
    alice = world.member()
    created = client.post(API_KEYS, json={"name": "ci"}, headers=alice.headers)
    assert created.status_code == 201 and "secret" in created.json()
    assert created.headers["Cache-Control"] == "no-store"
    assert client.get(ME, headers=alice.headers).headers["Cache-Control"] == "no-store"
