"""What bounds artifacts: the session's window, the size limit, the per-session cap, the
organization's storage plan; and what ends them: retention, abandoned uploads, orphans, each
through the server's own background sweep."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from sessions_api.core.timestamps import parse_rfc3339, utcnow
from sessions_api.models import Role, plans
from sessions_api.models.artifacts import retention
from sessions_api.models.artifacts.storage import store
from tests.support.api import UNREACHABLE_HOOK, bodies_to_send, scrape
from tests.support.artifacts import API, Payload, attach, fetch, send

LOG = Payload(b"E/AndroidRuntime: FATAL EXCEPTION: main\n" * 50)
# How long the tests below wait for the background sweep at most.
SWEEP_WAIT_SECONDS = 10


@pytest.fixture
def settings(settings):
    """Small limits, a fast sweep and short URLs, so that each is reached in a test."""
    return settings.replace(
        max_artifact_bytes=64 * 1024,
        max_artifacts_per_session=3,
        expiry_sweep_seconds=0.2,
        artifact_url_ttl_seconds=1,
        artifact_upload_grace_seconds=0,
    )


def _declare(client, writer, team, session_id, **changes):
    return client.post(
        f"{API}/sessions/{session_id}/artifacts", json=LOG.declared(**changes), headers=writer.acting_on(team.id)
    )


def _refused(answer, status, code):
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    return answer.json()["error"]["message"]


def test_a_session_ended_more_than_a_day_ago_takes_no_artifacts(client, world, writer, team):
    world.sessions(team, writer.user, [utcnow() - timedelta(days=2)])
    old = client.get(f"{API}/sessions", headers=writer.acting_on(team.id)).json()["data"][0]["id"]
    _refused(_declare(client, writer, team, old), 409, "artifact_window_closed")
    world.sessions(team, writer.user, [utcnow() - timedelta(hours=2)])
    recent = client.get(f"{API}/sessions", headers=writer.acting_on(team.id)).json()["data"][0]["id"]
    assert _declare(client, writer, team, recent).status_code == 201


def test_an_artifact_larger_than_the_limit_is_refused_before_anything_is_kept(client, writer, team, session_id):
    message = _refused(_declare(client, writer, team, session_id, size=64 * 1024 + 1), 413, "artifact_too_large")
    assert "SESSIONS_API_MAX_ARTIFACT_BYTES" in message
    listed = client.get(f"{API}/sessions/{session_id}/artifacts", headers=writer.acting_on(team.id))
    assert listed.json()["data"] == []


def test_a_session_holds_at_most_its_cap_of_artifacts(client, writer, team, session_id):
    for _ in range(3):
        assert _declare(client, writer, team, session_id).status_code == 201
    _refused(_declare(client, writer, team, session_id), 409, "limit_reached")


def test_the_storage_plan_counts_pending_uploads_and_says_use_and_limit(client, writer, team, session_id):
    plans.set_plan(team.id, max_storage_bytes=len(LOG.data) * 2)
    first = attach(client, writer.acting_on(team.id), session_id, LOG)
    assert _declare(client, writer, team, session_id).status_code == 201  # pending, counted
    message = _refused(_declare(client, writer, team, session_id), 409, "storage_quota_exceeded")
    assert f"{2 * len(LOG.data)} of the {2 * len(LOG.data)} bytes" in message
    plan = client.get(f"{API}/organizations/{team.id}", headers=writer.headers).json()["plan"]
    assert (plan["storedBytes"], plan["maxStorageBytes"]) == (2 * len(LOG.data), 2 * len(LOG.data))
    client.delete(f"{API}/sessions/{session_id}/artifacts/{first['id']}", headers=writer.acting_on(team.id))
    assert _declare(client, writer, team, session_id).status_code == 201  # its bytes were given back


def test_the_storage_plan_admits_no_two_uploads_for_its_last_bytes(client, world, writer, team):
    """Each reservation is one statement: two starts at once never both take the last bytes."""
    from concurrent.futures import ThreadPoolExecutor

    plans.set_plan(team.id, max_storage_bytes=len(LOG.data) * 3)
    world.device()
    sessions = [
        client.post(f"{API}/sessions", json={"platform": "android"}, headers=writer.acting_on(team.id)).json()["id"]
        for _ in range(1)
    ]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _declare(client, writer, team, sessions[0]).status_code, range(6)))
    assert sorted(answers) == [201, 201, 201, 409, 409, 409]


def _wait_for(condition, what):
    deadline = time.monotonic() + SWEEP_WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"the sweep did not {what} within {SWEEP_WAIT_SECONDS}s")


def _status(client, writer, team, session_id, artifact_id):
    path = f"{API}/sessions/{session_id}/artifacts/{artifact_id}"
    return client.get(path, headers=writer.acting_on(team.id)).json()["status"]


def test_an_artifact_expires_at_the_end_of_its_retention_and_its_bytes_go(client, writer, team, session_id):
    plans.set_plan(team.id, artifact_retention_days=1 / 86400)  # one second
    before = scrape(client)
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    held = scrape(client)
    assert held[("sessions_api_artifact_stored_bytes", ())] == len(LOG.data)
    uploaded = ("sessions_api_artifact_upload_bytes_total", ())
    assert held[uploaded] - before.get(uploaded, 0) == len(LOG.data)
    key = f"{team.id}/{session_id}/{artifact['id']}"
    assert store().head(key) is not None
    _wait_for(lambda: _status(client, writer, team, session_id, artifact["id"]) == "expired", "expire it")
    assert store().head(key) is None
    session = client.get(f"{API}/sessions/{session_id}", headers=writer.acting_on(team.id)).json()
    assert session["artifactCount"] == 0
    plan = client.get(f"{API}/organizations/{team.id}", headers=writer.headers).json()["plan"]
    assert plan["storedBytes"] == 0
    expired = ("sessions_api_artifacts_ended_total", (("how", "expired"),))
    assert scrape(client)[expired] - before.get(expired, 0) == 1
    assert scrape(client)[("sessions_api_artifact_stored_bytes", ())] == 0


def test_an_upload_never_completed_fails_and_frees_its_bytes(client, writer, team, session_id):
    artifact = _declare(client, writer, team, session_id).json()
    _wait_for(lambda: _status(client, writer, team, session_id, artifact["id"]) == "failed", "fail it")
    assert client.get(f"{API}/organizations/{team.id}", headers=writer.headers).json()["plan"]["storedBytes"] == 0
    late = client.post(
        f"{API}/sessions/{session_id}/artifacts/{artifact['id']}/complete", headers=writer.acting_on(team.id)
    )
    _refused(late, 409, "artifact_not_pending")


def test_objects_no_artifact_names_are_swept_and_live_ones_kept(client, writer, team, session_id):
    pending = _declare(client, writer, team, session_id).json()
    pending_key = f"{team.id}/{session_id}/{pending['id']}"
    assert send(client, pending["upload"], LOG.data).status_code == 204
    orphan_key = f"{team.id}/{session_id}/{uuid.uuid4()}"
    path = store().path_of(orphan_key)
    path.write_bytes(b"left behind by a process killed after deleting a row")
    after, removed = "", 0
    for _ in range(1000):
        done = retention.sweep_orphans(after)
        after, removed = done.after, removed + done.removed
        if not after:
            break
    assert removed >= 1 and not path.exists()
    assert store().head(pending_key) is not None


def test_an_available_artifact_is_sent_to_the_endpoints_subscribed(client, world, writer, team, session_id):
    admin = world.member(of=[(team, Role.admin)])
    body = {"url": UNREACHABLE_HOOK, "events": ["artifact.available"]}
    assert client.post(f"{API}/webhook-endpoints", json=body, headers=admin.acting_on(team.id)).status_code == 201
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    sent = bodies_to_send("artifact.available")
    assert len(sent) == 1
    (event,) = sent
    assert event == {"type": "artifact.available", "timestamp": artifact["availableAt"], "data": artifact}


def test_a_download_url_ends_at_its_expiry(client, writer, team, session_id):
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    shown = client.get(f"{API}/sessions/{session_id}/artifacts/{artifact['id']}", headers=writer.acting_on(team.id))
    time.sleep(2.1)
    assert fetch(client, shown.json()["download"]["url"]).status_code == 403


def test_a_download_url_works_until_the_instant_it_is_shown_to_expire(client, writer, team, session_id, monkeypatch):
    artifact = attach(client, writer.acting_on(team.id), session_id, LOG)
    download = client.get(
        f"{API}/sessions/{session_id}/artifacts/{artifact['id']}", headers=writer.acting_on(team.id)
    ).json()["download"]
    expires_at = parse_rfc3339(download["expiresAt"])
    monkeypatch.setattr("sessions_api.core.stores.files.utcnow", lambda: expires_at - timedelta(milliseconds=1))
    assert fetch(client, download["url"]).status_code == 200
    monkeypatch.setattr("sessions_api.core.stores.files.utcnow", lambda: expires_at)
    assert fetch(client, download["url"]).status_code == 403
