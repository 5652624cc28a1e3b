"""`sessions-api serve --workers N`: several processes, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.live_server import cli_json, running_server, server_env

pytestmark = pytest.mark.live_server


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def test_several_workers_serve_and_stop_gracefully(private_database_url, tmp_path):
    # Response validation makes each 500-session page slow enough to be caught in flight.
    env = server_env(private_database_url, SESSIONS_API_VALIDATE_RESPONSES="true")
    user = cli_json(env, "user", "create", "--email", "wendy@example.com")
    device = cli_json(
        env, "device", "add", "--platform", "ios", "--type", "physical", "--name", "iPhone", "--os-version", "18"
    )
    line = json.dumps(
        {
            "organization": user["defaultOrganization"],
            "user": user["id"],
            "device": device["id"],
            "createdAt": "2026-01-01T00:00:00Z",
            "releasedAt": "2026-01-01T01:00:00Z",
        }
    )
    (tmp_path / "many.jsonl").write_text("\n".join([line] * 2000))
    cli_json(env, "session", "import", str(tmp_path / "many.jsonl"))
    secret = cli_json(env, "key", "create", "--user", user["id"])["secret"]

    with running_server(env, "--workers", "2", "--graceful-timeout", "20", log_path=tmp_path / "server.log") as (
        base,
        process,
    ):
        assert len(_children(process.pid)) >= 2  # the supervisor and its workers

        outcomes: list[object] = []

        def fetch() -> None:
            request = urllib.request.Request(
                f"{base}/sessions?limit=500", headers={"Authorization": f"Bearer {secret}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    outcomes.append(len(json.loads(response.read())["data"]))
            except urllib.error.URLError as exc:
                outcomes.append(exc.reason)
            except OSError as exc:
                outcomes.append(exc)

        clients = [threading.Thread(target=fetch) for _ in range(12)]
        for client in clients:
            client.start()
        time.sleep(0.3)  # let the requests reach the workers
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(timeout=60)
        process.wait(timeout=30)
        assert time.monotonic() - stopped_at < 25  # within the graceful timeout, bounded

    completed = [outcome for outcome in outcomes if outcome == 500]
    assert completed, f"no request in flight completed: {outcomes}"
    # Whatever was accepted finished whole; anything else was refused, never cut off. A
    # connection still in the listen queue when a worker closes its socket is reset before a
    # byte of answer (a worker serving a page on its loop accepts the next one after it); a
    # cut-off answer would be an incomplete body instead.
    for outcome in outcomes:
        assert (
            outcome == 500
            or isinstance(outcome, ConnectionRefusedError | ConnectionResetError)
            or ("refused" in str(outcome) or "reset" in str(outcome))
        ), outcomes
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
