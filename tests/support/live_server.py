"""A real `sessions-api serve` process on a free port, and the CLI run as a user runs it."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

from sessions_api.cli.commands import main
from tests.support.secrets_in_logs import LOG_LINE, assert_no_secrets

COMMAND = shutil.which("sessions-api", path=str(Path(sys.executable).parent)) or "sessions-api"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_json(env: dict, *argv: str) -> dict:
    """`sessions-api ARGV --json` in this environment, as its output. The command's own code
    runs in this process (`main`): starting a process per call would cost a second each, and
    the tests that are about the installed command run it as one."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), redirect_stdout(out), redirect_stderr(err):
        code = main([*argv, "--json"])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


@contextmanager
def running_server(env: dict, *extra_args: str, log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start the server; yields (base URL of the API, process); stops it afterwards."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        _wait_until_up(base, process, log_path)
        yield base, process
    finally:
        stop(process)
        logged = [line for line in log_path.read_text(errors="replace").splitlines() if LOG_LINE.match(line)]
        assert_no_secrets(logged, f"the log of {log_path.name}")


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL should it not have stopped within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_up(base: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(f"{base}/sessions", timeout=2)
        except urllib.error.HTTPError:
            return  # it answers (401 without a key): it is up
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not start in {timeout}s:\n{log_path.read_text()}")


def server_env(database_url: str, **extra: str) -> dict:
    """This environment for a server on `database_url`: production settings unless `extra` says otherwise."""
    inherited = {k: v for k, v in os.environ.items() if k != "SESSIONS_API_VALIDATE_RESPONSES"}
    # /metrics on the server's own port (tests start several servers; a listener each would collide).
    return {**inherited, "DATABASE_URL": database_url, "SESSIONS_API_METRICS_LISTEN": "api", **extra}


def api_call(base: str, headers: dict, method: str, path: str, body: dict | None = None) -> dict | None:
    """One request to a live server with these headers; its JSON answer (None when empty)."""
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={**headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        content = response.read()
    return json.loads(content) if content else None
