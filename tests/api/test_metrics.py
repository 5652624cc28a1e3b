"""Prometheus metrics of one process (tests/processes/test_operations.py sums several)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta

from prometheus_client.mmap_dict import MmapedDict
from starlette.testclient import TestClient

from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, members, session_import
from sessions_api.web.app import create_app
from tests.support.api import SESSIONS, UNREACHABLE_HOOK, WEBHOOK_ENDPOINTS, scrape

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _requests(samples, operation, status, method="GET") -> float:
    labels = (("method", method), ("operation", operation), ("status", str(status)))
    return samples.get(("sessions_api_requests_total", labels), 0.0)


def test_requests_are_counted_by_operation_method_and_status(client, world):
    alice = world.member()
    before = scrape(client)
    for _ in range(3):
        client.get(SESSIONS, headers=alice.headers)
    client.get(f"{SESSIONS}/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10", headers=alice.headers)
    client.get(SESSIONS)
    client.get("/api/v1/nowhere")
    after = scrape(client)
    assert _requests(after, "listSessions", 200) - _requests(before, "listSessions", 200) == 3
    assert _requests(after, "getSession", 404) - _requests(before, "getSession", 404) == 1
    assert _requests(after, "listSessions", 401) - _requests(before, "listSessions", 401) == 1
    assert _requests(after, "unmatched", 404) - _requests(before, "unmatched", 404) == 1
    count = ("sessions_api_request_duration_seconds_count", (("operation", "listSessions"),))
    assert after[count] - before.get(count, 0) == 4


def test_no_label_carries_an_id(client, world):
    alice = world.member()
    team = world.organization()
    members.add_member(team.id, alice.user.id, Role.admin)
    client.get(f"{SESSIONS}/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10", headers=alice.acting_on(team.id))
    client.get(f"/api/v1/{team.id}", headers=alice.headers)
    text = client.get("/metrics").text
    assert not UUID.search(text), text


def test_the_database_says_how_many_sessions_are_live_and_devices_are_in_each_state(client, world):
    alice = world.member()
    world.sessions(alice.personal, alice.user, [None, None])  # two live sessions, a device each
    world.device(name="Idle")
    samples = scrape(client)
    assert samples[("sessions_api_database_up", ())] == 1
    assert samples[("sessions_api_live_sessions", ())] == 2
    assert samples[("sessions_api_devices", (("state", "in_use"),))] == 2
    assert samples[("sessions_api_devices", (("state", "available"),))] == 1
    assert samples[("sessions_api_devices", (("state", "offline"),))] == 0


def test_expiry_sweeps_and_what_they_released_are_counted(settings, world):
    alice = world.member()
    released, sweeps = ("sessions_api_expired_sessions_released_total", ()), ("sessions_api_expiry_sweeps_total", ())
    with TestClient(create_app(settings.replace(expiry_sweep_seconds=0.05))) as client:
        before = scrape(client)
        started = utcnow() - timedelta(minutes=5)
        line = {
            "organization": str(alice.personal.id),
            "user": str(alice.user.id),
            "device": str(world.device().id),
            "createdAt": format_utc(started),
            "expiresAt": format_utc(started + timedelta(minutes=1)),
        }
        session_import.import_sessions([json.dumps(line)])  # live, and past its expiry
        deadline = time.monotonic() + 5
        while (after := scrape(client))[released] == before.get(released, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert after[released] - before.get(released, 0) == 1
    assert after[sweeps] > before.get(sweeps, 0)


def test_metrics_can_be_turned_off(settings):
    with TestClient(create_app(settings.replace(metrics=False))) as client:
        assert client.get("/metrics").status_code == 404


def test_metrics_with_a_listener_of_their_own_are_not_on_the_api_port(settings):
    with TestClient(create_app(settings.replace(metrics_listen="127.0.0.1:9464"))) as client:
        assert client.get("/metrics").status_code == 404


def test_by_default_tenants_cannot_read_fleet_wide_metrics_on_the_api_port(settings, monkeypatch):
    """The default is a listener of their own, on the loopback (the scraper's side of a pod);
    the API's port, which tenants reach, serves no /metrics."""
    monkeypatch.delenv("SESSIONS_API_METRICS_LISTEN", raising=False)
    default = Settings(database_url=settings.database_url)
    assert default.metrics_address() == ("127.0.0.1", 9464)
    with TestClient(create_app(default)) as client:
        assert client.get("/metrics").status_code == 404


def test_the_database_says_how_many_webhook_deliveries_are_pending(client, world):
    team = world.organization()
    admin = world.member(of=[(team, Role.admin)])
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    assert scrape(client)[("sessions_api_webhook_deliveries_pending", ())] == 0
    hook = {"url": UNREACHABLE_HOOK, "events": ["session.started"]}
    assert client.post(WEBHOOK_ENDPOINTS, json=hook, headers=admin.acting_on(team.id)).status_code == 201
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=admin.acting_on(team.id)).status_code == 201
    # Its host never resolves: whether or not an attempt was made yet, the delivery is pending.
    assert scrape(client)[("sessions_api_webhook_deliveries_pending", ())] == 1


def test_a_scrape_drops_the_live_gauges_of_workers_that_are_gone(client, tmp_path, monkeypatch):
    """Under `serve --workers N` uvicorn replaces a worker that dies: its `livesum` gauges (the
    database calls it had in flight) must not stay in the sums."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"gauge_livesum_{gone.pid}.db"
    mine = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    for path in (stale, mine):
        MmapedDict(str(path)).close()  # an empty file of prometheus-client's own format
    assert client.get("/metrics").status_code == 200
    assert not stale.exists() and mine.exists()
