"""End to end: `sessions-api serve --demo` as a newcomer runs it, then plain HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request

import pytest

from tests.support.live_server import running_server

pytestmark = pytest.mark.live_server


def _get(url: str, secret: str, organization: str | None = None) -> tuple[int, object, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {secret}"})
    if organization:
        request.add_header("X-Organization-Id", organization)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, json.loads(response.read())


def _demo_output(log_path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if "X-Organization-Id" in text:
            return text
        time.sleep(0.1)
    raise AssertionError(log_path.read_text())


def test_serve_demo_answers_with_demo_data_using_the_printed_key(tmp_path, monkeypatch):
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    monkeypatch.chdir(tmp_path)  # the default database is a file in the working directory
    with running_server(env, "--demo", log_path=tmp_path / "server.log") as (base, process):
        output = _demo_output(tmp_path / "server.log")
        secret = re.search(r"Demo API key \(shown once\): (sapi_\S+)", output).group(1)
        team = re.search(r"X-Organization-Id: ([0-9a-f-]{36})", output).group(1)
        assert f"curl -H 'Authorization: Bearer {secret}' '{base}/sessions?limit=5'" in output
        assert f"API docs: {base}/ui/" in output

        status, headers, personal = _get(f"{base}/sessions?limit=5", secret)
        assert status == 200 and headers["X-Request-Id"]
        assert len(personal["data"]) == 5 and "nextCursor" in personal
        _, _, team_page = _get(f"{base}/sessions?limit=100", secret, team)
        assert {session["organization"] for session in team_page["data"]} == {team}
        assert any(session["releasedAt"] is None for session in team_page["data"])
        one = team_page["data"][0]
        _, _, got = _get(f"{base}/sessions/{one['id']}", secret, team)
        assert got == one

        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal as its exit status.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Finished server process" in (tmp_path / "server.log").read_text()
    assert (tmp_path / "sessions.db").exists()
    # A second start reuses the data and prints a new working key.
    with running_server(env, "--demo", log_path=tmp_path / "again.log") as (base, _process):
        secret = re.search(r"Demo API key \(shown once\): (sapi_\S+)", _demo_output(tmp_path / "again.log")).group(1)
        assert _get(f"{base}/sessions?limit=1", secret)[0] == 200
