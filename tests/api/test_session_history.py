"""Every Session answer's stateHistory, from the session's own row and its request: queued (if
it waited), started, then released or expired; imported sessions and the log's retention
change nothing."""

from __future__ import annotations

from datetime import timedelta

from sessions_api.core.timestamps import utcnow
from sessions_api.models import devices, events, leases
from tests.support.api import API


def _states(session):
    return [(entry["state"], entry["at"]) for entry in session["stateHistory"]]


def test_a_started_then_released_session_says_so(client, writer, team, session_id):
    headers = writer.acting_on(team.id)
    live = client.get(f"{API}/sessions/{session_id}", headers=headers).json()
    assert _states(live) == [("started", live["createdAt"])]
    released = client.post(f"{API}/sessions/{session_id}/release", headers=headers).json()
    assert _states(released) == [("started", released["createdAt"]), ("released", released["releasedAt"])]
    assert client.get(f"{API}/sessions", headers=headers).json()["data"][0]["stateHistory"] == released["stateHistory"]


def test_a_session_that_waited_in_the_queue_starts_with_queued(client, world, writer, team):
    headers = writer.acting_on(team.id)
    device = world.device(platform="ios", type="simulator", name="Busy", os_version="18")
    devices.set_disabled(device.id, True)
    body = {"platform": "ios", "queue": {"maxWaitSeconds": 60}}
    queued = client.post(f"{API}/sessions", json=body, headers=headers).json()
    devices.set_disabled(device.id, False)
    started = client.get(f"{API}/session-requests/{queued['id']}", headers={**headers, "Prefer": "wait=10"}).json()
    session = client.get(f"{API}/sessions/{started['session']['id']}", headers=headers).json()
    assert _states(session) == [("queued", queued["queuedAt"]), ("started", session["createdAt"])]


def test_a_session_ended_at_its_expiry_is_expired_even_after_the_log_forgot_it(client, world, writer, team):
    headers = writer.acting_on(team.id)
    world.sessions(team, writer.user, [utcnow() - timedelta(hours=3)], released=[None])  # imported, live
    imported = client.get(f"{API}/sessions", headers=headers).json()["data"][0]
    leases.release_expired()  # its expiresAt has passed: the sweep ends it there
    events.sweep_expired(utcnow() + timedelta(days=365))  # the log is gone; the history is not
    ended = client.get(f"{API}/sessions/{imported['id']}", headers=headers).json()
    assert _states(ended) == [("started", ended["createdAt"]), ("expired", ended["expiresAt"])]
