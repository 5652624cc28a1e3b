"""A real server answers another organization while the largest report one admin may ask for
runs: the report runs on the heavy reads' threads, never on the event loop."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc
from sessions_api.models import Role, api_keys, devices, members, session_import, tenancy
from tests.support.live_server import api_call, running_server, server_env

pytestmark = pytest.mark.live_server

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 1000  # the most buckets a report may hold
SESSIONS = 40_000  # enough that the report runs for a while on either database
ATTEMPTS = 5


def _history(organization_id, user_id, device_id) -> list[str]:
    step = timedelta(days=DAYS) / SESSIONS
    return [
        json.dumps(
            {
                "organization": str(organization_id),
                "user": str(user_id),
                "device": str(device_id),
                "createdAt": format_utc(T0 + step * n),
                "releasedAt": format_utc(T0 + step * n + timedelta(minutes=20)),
            }
        )
        for n in range(SESSIONS)
    ]


def test_another_organization_is_answered_while_the_largest_report_runs(private_database_url, tmp_path):
    db.configure(Settings(database_url=private_database_url))
    reporter, _ = tenancy.create_user("reporter@example.com")
    busy = tenancy.create_organization("Busy")
    members.add_member(busy.id, reporter.id, Role.admin)
    device = devices.add_device("android", "emulator", "Pixel 9", "15")
    session_import.import_sessions(_history(busy.id, reporter.id, device.id))
    _, report_secret = api_keys.create_key(reporter.id, None)
    neighbour, _ = tenancy.create_user("neighbour@example.com")
    _, neighbour_secret = api_keys.create_key(neighbour.id, None)

    query = urllib.parse.urlencode(
        {"from": format_utc(T0), "to": format_utc(T0 + timedelta(days=DAYS)), "granularity": "day", "groupBy": "user"}
    )
    report_path = f"/organizations/{busy.id}/usage?{query}"
    env = server_env(private_database_url, SESSIONS_API_RATE_LIMIT="100000/minute")
    with running_server(env, log_path=tmp_path / "server.log") as (base, _process):
        metrics = base.removesuffix("/api/v1") + "/metrics"
        answered_while_running = False
        for _ in range(ATTEMPTS):
            report: dict = {}

            def run_report(report: dict = report) -> None:
                report["body"] = api_call(base, {"Authorization": f"Bearer {report_secret}"}, "GET", report_path)
                report["ended"] = time.monotonic()

            thread = threading.Thread(target=run_report)
            thread.start()
            # The server says the report runs; on the event loop it could not say so until it ended.
            seen_running = _wait_until(lambda t=thread: _heavy_reads_running(metrics) > 0 or not t.is_alive())
            if seen_running and thread.is_alive():
                page = api_call(base, {"Authorization": f"Bearer {neighbour_secret}"}, "GET", "/sessions?limit=1")
                assert page is not None and page["object"] == "list"
                answered = time.monotonic()
                thread.join()
                answered_while_running = answered < report["ended"]
            thread.join()
            assert len(report["body"]["data"]) == DAYS
            if answered_while_running:
                break
        assert answered_while_running


def _heavy_reads_running(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sessions_api_db_calls_in_use" and sample.labels.get("pool") == "heavy":
                return sample.value
    return 0.0


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False
