"""The audit log: every change once, in its organization, with its actor; exact paging."""

from __future__ import annotations

import json
from datetime import timedelta

from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, leases, session_import
from tests.support.api import (
    API_KEYS,
    AUDIT_EVENTS,
    ORGANIZATIONS,
    SESSIONS,
    assert_error,
    join,
    list_all,
    members_path,
    organization_path,
    revoke_path,
)


def _events(client, admin, organization_id, limit=100, **filters):
    return list_all(client, admin.acting_on(organization_id), limit=limit, path=AUDIT_EVENTS, **filters)


def _summary(events):
    """(type, actor user, target id) of each event, oldest first."""
    return [
        (event["type"], event["actor"]["user"] if event["actor"] else None, event["target"]["id"])
        for event in reversed(events)
    ]


def _api_actor(member):
    return {"user": str(member.user.id), "key": str(member.key_id)}


def test_every_change_through_the_api_is_recorded_once_with_its_actor(client, world):
    alice, bob = world.member(), world.member()
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    team = client.post(ORGANIZATIONS, json={"name": "Team"}, headers=alice.headers).json()["id"]
    alice_in_team = alice.acting_on(team)
    assert client.patch(organization_path(team), json={"name": "Team B"}, headers=alice.headers).status_code == 200
    join(client, alice.headers, team, bob, "readonly")
    bobs_key = client.post(API_KEYS, json={"name": "bob's", "organization": team}, headers=bob.headers).json()
    assert client.patch(members_path(team, bob.user.id), json={"role": "readwrite"}, headers=alice.headers)
    alices_key = client.post(API_KEYS, json={"name": "ci", "organization": team}, headers=alice.headers).json()
    alices_key_revoked = client.post(revoke_path(alices_key["id"]), headers=alice.headers).json()
    session = client.post(SESSIONS, json={"platform": "ios"}, headers=alice_in_team).json()
    released = client.post(f"{SESSIONS}/{session['id']}/release", headers=alice_in_team).json()
    assert client.delete(members_path(team, bob.user.id), headers=alice.headers).status_code == 204
    unbound = client.post(API_KEYS, json={"name": "laptop"}, headers=alice.headers).json()

    events = _events(client, alice, team, limit=3)
    a, b = str(alice.user.id), str(bob.user.id)
    assert _summary(events) == [
        ("organization.created", a, team),
        ("member.added", a, a),
        ("organization.renamed", a, team),
        ("member.added", b, b),  # bob accepted the invitation: his act
        ("key.created", b, bobs_key["id"]),
        ("member.role_changed", a, b),
        ("key.created", a, alices_key["id"]),
        ("key.revoked", a, alices_key["id"]),
        ("session.started", a, session["id"]),
        ("session.released", a, session["id"]),
        ("key.revoked", a, bobs_key["id"]),  # leaving the team revokes the keys bound to it
        ("member.removed", a, b),
    ]
    assert {event["organization"] for event in events} == {team}
    assert all(event["origin"] == "api" for event in events)
    event = {(event["type"], event["target"]["id"]): event for event in events}
    assert event["key.created", alices_key["id"]]["actor"] == _api_actor(alice)
    assert event["organization.renamed", team]["data"] == {"before": {"name": "Team"}, "after": {"name": "Team B"}}
    assert event["member.role_changed", b]["data"] == {"before": {"role": "readonly"}, "after": {"role": "readwrite"}}
    assert event["member.removed", b]["data"] == {"before": {"role": "readwrite"}}
    assert event["key.created", alices_key["id"]]["data"] == {
        "after": {"name": "ci", "user": a, "organization": team, "expiresAt": None}
    }
    assert event["key.revoked", alices_key["id"]]["data"] == {"after": {"revokedAt": alices_key_revoked["revokedAt"]}}
    assert event["session.started", session["id"]]["data"] == {
        "after": {"device": session["device"]["id"], "expiresAt": session["expiresAt"]}
    }
    assert event["session.released", session["id"]]["data"] == {"after": {"releasedAt": released["releasedAt"]}}
    created_at = [event["createdAt"] for event in events]
    assert created_at == sorted(created_at, reverse=True) and len(set(created_at)) == len(created_at)
    # A key bound to no organization is its user's: in their Personal organization (the first
    # one an operator made, at the command line).
    personal = _events(client, alice, alice.personal.id, type="key.created")
    assert [(event["target"]["id"], event["origin"], event["actor"]) for event in personal] == [
        (unbound["id"], "api", _api_actor(alice)),
        (str(alice.key_id), "cli", {"user": None, "key": None}),
    ]


def test_an_expiry_is_the_systems_wherever_it_is_noticed(client, world):
    alice = world.member()
    team = world.organization("Team")
    admin = world.member(of=[(team, Role.admin)])
    device = world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    started = utcnow() - timedelta(hours=3)
    line = {"organization": str(team.id), "user": str(admin.user.id), "device": str(device.id)}
    session_import.import_sessions([json.dumps({**line, "createdAt": format_utc(started)})])
    (expired,) = client.get(SESSIONS, headers=admin.acting_on(team.id)).json()["data"]
    # Alice's start, in her own organization, reclaims the device the team's session still holds.
    mine = client.post(SESSIONS, json={"platform": "ios"}, headers=alice.headers).json()
    assert mine["device"]["id"] == str(device.id)
    (event,) = _events(client, admin, team.id, type="session.expired")
    assert event["target"] == {"kind": "session", "id": expired["id"]}
    assert event["origin"] == "system" and event["actor"] is None
    assert event["data"] == {"after": {"releasedAt": expired["expiresAt"]}}
    assert [e["type"] for e in _events(client, alice, alice.personal.id, type="session.started")] == ["session.started"]

    # The sweeper's expiries, and a release that comes after the expiry, are the system's too.
    soon = client.post(SESSIONS, json={"platform": "ios"}, headers=admin.acting_on(team.id))
    assert_error(soon, 409, "no_device_available")
    assert leases.release_expired(now=utcnow() + timedelta(hours=2)) == 1
    assert leases.release_expired(now=utcnow() + timedelta(hours=2)) == 0  # each once
    expiries = _events(client, alice, alice.personal.id, type="session.expired")
    assert [(e["target"]["id"], e["actor"], e["origin"]) for e in expiries] == [(mine["id"], None, "system")]


def test_a_release_after_the_expiry_records_the_expiry(client, world, monkeypatch):
    alice = world.member()
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    session = client.post(SESSIONS, json={"platform": "ios", "maxDurationMinutes": 1}, headers=alice.headers).json()
    later = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr("sessions_api.models.leases.utcnow", lambda: later)
    released = client.post(f"{SESSIONS}/{session['id']}/release", headers=alice.headers).json()
    assert released["releasedAt"] == session["expiresAt"]
    (event,) = _events(client, alice, alice.personal.id, type="session.expired")
    assert event["target"]["id"] == session["id"] and event["actor"] is None
    assert _events(client, alice, alice.personal.id, type="session.released") == []


def test_the_filters_combine(client, world):
    alice, bob = world.member(), world.member()
    team = client.post(ORGANIZATIONS, json={"name": "Team"}, headers=alice.headers).json()["id"]
    join(client, alice.headers, team, bob, "admin")
    for name in ("One", "Two", "Three"):
        who = alice if name != "Two" else bob
        assert client.patch(organization_path(team), json={"name": name}, headers=who.headers).status_code == 200
    renames = _events(client, alice, team, limit=1, type="organization.renamed")
    assert [event["data"]["after"]["name"] for event in renames] == ["Three", "Two", "One"]
    by_bob = _events(client, alice, team, type="organization.renamed", actor=str(bob.user.id))
    assert [event["data"]["after"]["name"] for event in by_bob] == ["Two"]
    assert {event["type"] for event in _events(client, alice, team, actor=str(alice.user.id))} == {
        "organization.created",
        "member.added",
        "organization.renamed",
    }
    assert_error(client.get(AUDIT_EVENTS, params={"type": "key.lost"}, headers=alice.headers), 400, "invalid_request")


def test_only_the_organizations_own_events_are_shown(client, world):
    team, other = world.organization("Team"), world.organization("Other")
    admin = world.member(of=[(team, Role.admin), (other, Role.admin)])
    world.member(of=[(other, Role.readwrite)])
    team_events = _events(client, admin, team.id)
    assert {event["organization"] for event in team_events} == {str(team.id)}
    assert [event["target"]["id"] for event in team_events if event["type"] == "member.added"] == [str(admin.user.id)]
    bound = world.member(of=[(team, Role.admin)], bound_to=team)
    assert_error(client.get(AUDIT_EVENTS, headers=bound.acting_on(other.id)), 403, "forbidden")


def test_paging_is_exact_while_changes_are_recorded(client, world):
    alice = world.member()
    team = client.post(ORGANIZATIONS, json={"name": "Team"}, headers=alice.headers).json()["id"]
    for n in range(40):
        client.patch(organization_path(team), json={"name": f"Name {n}"}, headers=alice.headers)
    existing = {event["id"] for event in _events(client, alice, team)}
    assert len(existing) == 42
    seen, query = [], {"limit": 5}
    while True:
        body = client.get(AUDIT_EVENTS, params=query, headers=alice.acting_on(team)).json()
        seen += [event["id"] for event in body["data"]]
        # Changes between every two pages: each newer than every event listed.
        client.patch(organization_path(team), json={"name": f"Later {len(seen)}"}, headers=alice.headers)
        if "nextCursor" not in body:
            break
        query["before"] = body["nextCursor"]
    assert len(seen) == len(set(seen)) == 42 and set(seen) == existing
