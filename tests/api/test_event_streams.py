"""listEvents as Server-Sent Events: what is written streams in order, a resumed stream
replays exactly what it missed, and a stream ends at its time, at its grant's end, and counts
in the wait budget."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role
from tests.support.api import API

EVENTS = f"{API}/events"
STREAM = {"Accept": "text/event-stream"}


@pytest.fixture
def settings(settings):
    """Short streams, frequent heartbeats and checks: each test waits seconds, not minutes."""
    return settings.replace(
        stream_max_seconds=2.0, stream_heartbeat_seconds=0.5, long_poll_check_seconds=0.05, max_waits_per_key=2
    )


def _messages(client, headers) -> tuple[int, list[dict[str, str]]]:
    """Read a stream to its end: its status, and each message's fields (comments as `comment`)."""
    messages, fields = [], {}
    with client.stream("GET", EVENTS, headers={**headers, **STREAM}) as answer:
        if answer.status_code != 200:
            answer.read()
            return answer.status_code, [answer.json()]
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if not line:
                if fields:
                    messages.append(fields)
                fields = {}
            elif line.startswith(":"):
                fields["comment"] = line[1:].strip()
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return 200, messages


def _in_background(target):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(answer=target()))
    thread.start()
    return thread, result


def test_a_stream_sends_what_is_written_from_now_in_order(client, world, writer, team):
    world.device()
    client.post(f"{API}/sessions", json={"platform": "ios"}, headers=writer.acting_on(team.id))  # before: not sent
    thread, result = _in_background(lambda: _messages(client, writer.acting_on(team.id)))
    time.sleep(0.3)
    started = client.post(f"{API}/sessions", json={"platform": "android"}, headers=writer.acting_on(team.id)).json()
    client.post(f"{API}/sessions/{started['id']}/release", headers=writer.acting_on(team.id))
    thread.join(10)
    status, messages = result["answer"]
    assert status == 200 and messages[0] == {"retry": "3000"}
    sent = [message for message in messages if "event" in message]
    assert [message["event"] for message in sent] == ["session.started", "session.released"]
    assert all(message["id"].startswith("evt_") for message in sent) and sent[0]["id"] < sent[1]["id"]
    assert f'"id":"{started["id"]}"' in sent[0]["data"]
    assert any(message.get("comment") == "heartbeat" for message in messages)


def test_a_resumed_stream_replays_exactly_what_it_missed(client, world, writer, team):
    world.device()
    headers = writer.acting_on(team.id)
    for _ in range(3):
        started = client.post(f"{API}/sessions", json={"platform": "android"}, headers=headers).json()
        client.post(f"{API}/sessions/{started['id']}/release", headers=headers)
    logged = client.get(EVENTS, params={"limit": 500}, headers=headers).json()["data"][::-1]  # oldest first
    seen = logged[1]["id"]
    status, messages = _messages(client, {**headers, "Last-Event-ID": seen})
    assert status == 200
    assert [message["id"] for message in messages if "id" in message] == [event["id"] for event in logged[2:]]


def test_resuming_after_what_the_log_no_longer_keeps_is_410(client, writer, team):
    long_ago = "evt_" + "".join(c for c in format_utc(utcnow() - timedelta(days=40)) if c.isdigit())
    status, body = _messages(client, {**writer.acting_on(team.id), "Last-Event-ID": long_ago})
    assert status == 410 and body[0]["error"]["code"] == "events_expired"
    status, body = _messages(client, {**writer.acting_on(team.id), "Last-Event-ID": "evt_1"})
    assert status == 400


def test_streams_count_in_the_wait_budget(client, writer, team):
    first, _ = _in_background(lambda: _messages(client, writer.acting_on(team.id)))
    second, _ = _in_background(lambda: _messages(client, writer.acting_on(team.id)))
    time.sleep(0.3)
    status, body = _messages(client, writer.acting_on(team.id))
    assert status == 429 and body[0]["error"]["code"] == "too_many_waits"
    first.join(10)
    second.join(10)


def test_a_stream_ends_within_two_seconds_of_its_key_being_revoked(client, world, team, settings, apps):
    from starlette.testclient import TestClient

    from sessions_api.core import db
    from sessions_api.web.app import create_app

    longer = settings.replace(stream_max_seconds=30.0)
    app = apps.get(longer) or apps.setdefault(longer, create_app(longer))
    with db.bound(app.state.database), TestClient(app) as long_client:
        member = world.member(of=[(team, Role.readwrite)])
        began = time.monotonic()
        thread, result = _in_background(lambda: _messages(long_client, member.acting_on(team.id)))
        time.sleep(0.5)
        revoked = long_client.post(f"{API}/api-keys/{member.key_id}/revoke", headers=member.headers)
        assert revoked.status_code == 200
        thread.join(10)
        assert result["answer"][0] == 200 and time.monotonic() - began < 0.5 + 2.5


def test_json_stays_the_default(client, writer, team):
    answer = client.get(EVENTS, headers=writer.acting_on(team.id))
    assert answer.headers["content-type"] == "application/json" and answer.json()["object"] == "list"
