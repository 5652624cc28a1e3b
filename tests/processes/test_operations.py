"""What operators run: metrics summed over `--workers`, on a listener of their own, and logs
for machines."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live_server import cli_json, free_port, running_server, server_env

pytestmark = pytest.mark.live_server


def _get(url: str, secret: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {secret}"} if secret else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _list_sessions_200(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "sessions_api_requests_total"
        and sample.labels == {"operation": "listSessions", "method": "GET", "status": "200"}
    )


def _workers_counting(metrics_dir) -> set[str]:
    return {path.name for path in metrics_dir.glob("counter_*.db") if path.stat().st_size > 0}


@pytest.fixture
def caller(private_database_url) -> tuple[dict, str]:
    env = server_env(private_database_url)
    user = cli_json(env, "user", "create", "--email", "olga@example.com")
    return env, cli_json(env, "key", "create", "--user", user["id"])["secret"]


def test_requests_on_several_workers_add_up(caller, tmp_path):
    env, secret = caller
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale")  # from an earlier run: wiped at start
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        root = base.removesuffix("/api/v1")
        # Each request on a connection of its own: the workers take turns at accepting them, but
        # which one accepts is the kernel's choice, so batches go until both have counted some.
        sent = 0
        for _ in range(20):
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: _get(f"{base}/sessions", secret)[0], range(30)))
            assert statuses == [200] * 30
            sent += 30
            if len(_workers_counting(metrics_dir)) >= 2:
                break
        assert len(_workers_counting(metrics_dir)) >= 2, _workers_counting(metrics_dir)
        # A request is counted as its answer has gone out: the last ones may lag a moment.
        counted = 0.0
        for _ in range(50):
            status, body = _get(f"{root}/metrics")
            assert status == 200
            counted = _list_sessions_200(body.decode())
            if counted >= sent:
                break
            time.sleep(0.05)
        assert counted == sent


def test_metrics_on_a_listener_of_their_own(caller, tmp_path):
    env, secret = caller
    port = free_port()
    env = {**env, "SESSIONS_API_METRICS_LISTEN": f"127.0.0.1:{port}"}
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        for _ in range(5):
            assert _get(f"{base}/sessions", secret)[0] == 200
        assert _get(base.removesuffix("/api/v1") + "/metrics")[0] == 404
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and _list_sessions_200(body.decode()) == 5
        assert b"sessions_api_live_sessions" in body


def test_json_logs_carry_the_request_and_the_caller(caller, tmp_path):
    env, secret = caller
    env = {**env, "SESSIONS_API_LOG_FORMAT": "json"}
    log = tmp_path / "server.log"
    with running_server(env, log_path=log) as (base, _process):
        request = urllib.request.Request(
            f"{base}/sessions?limit=2", headers={"Authorization": f"Bearer {secret}", "X-Request-Id": "json-42"}
        )
        with urllib.request.urlopen(request, timeout=10):
            pass
        _get(f"{base}/sessions/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10", secret)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([line for line in log.read_text().splitlines() if line.strip()]), log.read_text()
    access = [line for line in lines if line["logger"] == "sessions_api.access"]
    listed = next(line for line in access if line["request_id"] == "json-42")
    assert listed["level"] == "INFO" and re.fullmatch(r"\d{4}-\d\d-\d\dT.*", listed["time"])
    assert listed["method"] == "GET" and listed["route"] == "/api/v1/sessions" and listed["status"] == 200
    assert listed["operation"] == "listSessions" and listed["duration_ms"] >= 0
    assert listed["organization_id"] and listed["key_id"]
    got = next(line for line in access if line.get("operation") == "getSession")
    assert got["route"] == "/api/v1/sessions/{sessionId}" and got["status"] == 404


def test_the_readable_log_stays_the_default(caller, tmp_path):
    env, secret = caller
    env = {key: value for key, value in env.items() if key != "SESSIONS_API_LOG_FORMAT"}
    log = tmp_path / "server.log"
    with running_server(env, log_path=log) as (base, _process):
        _get(f"{base}/sessions", secret)
    assert re.search(r"INFO \[[0-9a-f]{32}\] sessions_api.access: 127.0.0.1 GET /api/v1/sessions 200", log.read_text())
