"""The event log (listEvents): every change once, in the organization's commit order, read by
role, filtered by type and session, paged without gap or repeat, kept for its retention."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from sessions_api.core import db
from sessions_api.core.timestamps import utcnow
from sessions_api.models import Role, devices, events
from tests.support.api import API, UNREACHABLE_HOOK
from tests.support.artifacts import Payload, attach

EVENTS = f"{API}/events"


def _events(client, member, team, **params):
    answer = client.get(EVENTS, params=params, headers=member.acting_on(team.id))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _types(page):
    return [event["type"] for event in page["data"]]


def test_every_change_is_one_event_newest_first_with_what_webhooks_send(client, world, admin, writer, team, session_id):
    headers = writer.acting_on(team.id)
    client.patch(f"{API}/sessions/{session_id}", json={"build": "b42"}, headers=headers)
    artifact = attach(client, headers, session_id, Payload(b"logcat\n"))
    released = client.post(f"{API}/sessions/{session_id}/release", headers=headers).json()
    client.post(
        f"{API}/webhook-endpoints",
        json={"url": UNREACHABLE_HOOK, "events": ["session.released"]},
        headers=admin.acting_on(team.id),
    )
    page = _events(client, admin, team)
    assert _types(page)[:6] == [
        "webhook_endpoint.created",
        "session.released",
        "artifact.available",
        "artifact.created",
        "session.updated",
        "session.started",
    ]
    by_type = {event["type"]: event for event in page["data"]}
    assert by_type["session.released"]["data"] == released  # the Session as getSession answers it
    assert by_type["artifact.available"]["data"] == artifact
    assert by_type["artifact.created"]["data"]["target"] == {"kind": "artifact", "id": artifact["id"]}
    assert by_type["webhook_endpoint.created"]["data"]["target"]["kind"] == "webhook_endpoint"
    instants = [event["createdAt"] for event in page["data"]]
    assert instants == sorted(instants, reverse=True) and len(set(instants)) == len(instants)
    ids = [event["id"] for event in page["data"]]
    assert ids == sorted(ids, reverse=True) and all(event["organization"] == str(team.id) for event in page["data"])


def test_members_read_session_and_artifact_events_and_only_admins_the_others(client, world, admin, team):
    reader = world.member(of=[(team, Role.readonly)])  # member.added, read by admins only
    client.post(f"{API}/sessions", json={"platform": "android"}, headers=admin.acting_on(team.id))
    world.device()
    client.post(f"{API}/sessions", json={"platform": "android"}, headers=admin.acting_on(team.id))
    assert "member.added" in _types(_events(client, admin, team))
    seen = _types(_events(client, reader, team))
    assert seen and all(kind.startswith(("session.", "artifact.")) for kind in seen)
    assert _events(client, reader, team, type="member.*")["data"] == []


def test_another_organizations_events_are_never_listed(client, world, admin, team, session_id):
    other = world.organization("Other")
    stranger = world.member(of=[(other, Role.admin)])
    page = _events(client, stranger, other)
    assert all(event["organization"] == str(other.id) for event in page["data"])
    assert session_id not in str(page)


def test_filters_by_type_category_several_and_session(client, world, writer, team, session_id):
    headers = writer.acting_on(team.id)
    world.device(name="Second")
    other_session = client.post(f"{API}/sessions", json={"platform": "android"}, headers=headers).json()["id"]
    attach(client, headers, session_id, Payload(b"one"))
    client.post(f"{API}/sessions/{session_id}/release", headers=headers)
    assert _types(_events(client, writer, team, type="session.released")) == ["session.released"]
    assert set(_types(_events(client, writer, team, type="artifact.*"))) == {"artifact.available", "artifact.created"}
    both = _events(client, writer, team, type=["session.released", "artifact.available"])  # a heavy read
    assert _types(both) == ["session.released", "artifact.available"]
    about_one = _events(client, writer, team, session=session_id)
    assert set(_types(about_one)) == {"session.started", "artifact.created", "artifact.available", "session.released"}
    assert other_session not in str(about_one)
    assert client.get(EVENTS, params={"type": "session.nothing"}, headers=headers).status_code == 400


def test_paging_never_skips_or_repeats(client, world, writer, team):
    for n in range(4):
        world.device(name=f"Phone {n}")
    headers = writer.acting_on(team.id)
    for _ in range(4):
        started = client.post(f"{API}/sessions", json={"platform": "android"}, headers=headers).json()
        client.post(f"{API}/sessions/{started['id']}/release", headers=headers)
    whole = [event["id"] for event in _events(client, writer, team, limit=500)["data"]]
    seen, cursor = [], None
    while True:
        page = _events(client, writer, team, limit=3, **({"before": cursor} if cursor else {}))
        seen += [event["id"] for event in page["data"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert seen == whole and len(whole) >= 8


def test_events_past_their_retention_are_swept(client, writer, team, session_id):
    assert _events(client, writer, team)["data"]
    assert events.sweep_expired(utcnow() + timedelta(days=31)) >= 1
    assert _events(client, writer, team)["data"] == []


def test_an_event_taken_first_and_committed_last_still_comes_first(client, world, team):
    """Two writers of one organization: the first takes its instant and holds its transaction
    open; the second waits for the organization's turn, so it can neither take an earlier
    instant nor commit first. A reader that resumes after what it saw misses neither."""
    admin = world.member(of=[(team, Role.admin)])
    first_written, release_first = threading.Event(), threading.Event()
    committed: list[str] = []
    database = db.current()

    def write(kind: str, hold: bool) -> None:
        with db.bound(database), db.writing() as conn:
            events.append(conn=conn, events=[events.NewEvent(team.id, kind, {"who": kind})])
            if hold:
                first_written.set()
                release_first.wait(10)
        committed.append(kind)

    first = threading.Thread(target=write, args=("member.added", True))
    first.start()
    assert first_written.wait(10)
    second = threading.Thread(target=write, args=("member.removed", False))
    second.start()
    time.sleep(0.3)  # the second writer is waiting for the turn, not done
    seen_before = [event["id"] for event in _events(client, admin, team)["data"]]
    release_first.set()
    first.join(10)
    second.join(10)
    assert committed == ["member.added", "member.removed"]
    after = [event for event in _events(client, admin, team)["data"] if event["id"] not in seen_before]
    by_kind = {event["type"]: event for event in after if event["type"] in ("member.added", "member.removed")}
    assert by_kind["member.added"]["data"] == {"who": "member.added"}
    assert by_kind["member.added"]["id"] < by_kind["member.removed"]["id"]
    assert by_kind["member.added"]["id"] not in seen_before  # not visible before its commit


@pytest.fixture
def queued_team(world, team):
    devices.set_disabled(world.device(platform="ios", type="simulator", name="Offline", os_version="18").id, True)
    return team


def test_queued_starts_are_events_too(client, writer, queued_team):
    body = {"platform": "ios", "queue": {"maxWaitSeconds": 60}}
    queued = client.post(f"{API}/sessions", json=body, headers=writer.acting_on(queued_team.id)).json()
    client.post(f"{API}/session-requests/{queued['id']}/cancel", headers=writer.acting_on(queued_team.id))
    page = _events(client, writer, queued_team, type="session.*")
    assert _types(page)[:2] == ["session.queue_cancelled", "session.queued"]
    assert page["data"][1]["data"]["id"] == queued["id"]
