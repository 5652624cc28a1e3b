"""The servers, each started as its own process with production settings.

- ours: the product's own `sessions-api serve --workers N` (uvicorn, its logging, access log,
  metrics and rate limits);
- fastapi: `uvicorn bench.fastapi_core.app:app --no-access-log`, FastAPI as a user who cares
  about speed writes and runs it;
- litestar: `uvicorn bench.litestar_msgspec.app:app --no-access-log`, Litestar with msgspec as
  its performance-aware users write and run it;
- reference: `uvicorn bench.reference.app:app` with uvicorn's defaults (access log on), FastAPI
  with ORM objects, as many users write it;
- floor: `uvicorn bench.floor.app:app --no-access-log`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("ours", "fastapi", "litestar", "reference", "floor")
LABELS = {
    "ours": "Sessions API (Connexion)",
    "fastapi": "FastAPI + SQLAlchemy Core (performance-aware)",
    "litestar": "Litestar + msgspec + SQLAlchemy Core (performance-aware)",
    "reference": "FastAPI + SQLModel reference",
    "floor": "Starlette + driver SQL floor",
}
APPS = {
    "fastapi": "bench.fastapi_core.app:app",
    "litestar": "bench.litestar_msgspec.app:app",
    "reference": "bench.reference.app:app",
    "floor": "bench.floor.app:app",
}


# Ours runs with its rate limits on (in memory, as by default), in the defaults' shape (one
# window per budget), with budgets no benchmark reaches: the same work per request, no 429s.
OURS_ENV = {
    "SESSIONS_API_RATE_LIMIT": "60000000/minute",
    "SESSIONS_API_RATE_LIMIT_PER_USER": "60000000/minute",
    "SESSIONS_API_RATE_LIMIT_PER_ORGANIZATION": "60000000/minute",
    "SESSIONS_API_AUTH_FAILURE_LIMIT": "60000000/minute",
    # The metrics beside the API rather than on their own fixed port (127.0.0.1:9464), so that
    # several of our servers (a benchmark, the test suite) never collide on it.
    "SESSIONS_API_METRICS_LISTEN": "api",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sessions_api_command() -> list[str]:
    """The product's CLI, as installed beside this Python (or run as a module)."""
    found = shutil.which("sessions-api", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "sessions_api"]


def command(name: str, port: int, workers: int) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name == "ours":
        return sessions_api_command() + ["serve", *host, "--workers", str(workers)]
    extra = [] if name == "reference" else ["--no-access-log"]
    return [sys.executable, "-m", "uvicorn", APPS[name], *host, "--workers", str(workers), *extra]


@dataclass
class Server:
    name: str
    database_url: str
    workers: int
    log_dir: Path
    probe_path: str
    probe_headers: dict
    env: dict = field(default_factory=dict)  # settings beside the database's, e.g. for writes
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url, "PYTHONPATH": str(ROOT)}
        env.pop("SESSIONS_API_VALIDATE_RESPONSES", None)  # production: the default (off)
        if self.name == "ours":
            env = {**OURS_ENV, **env}
        env.update(self.env)
        log = open(self.log_dir / f"{self.name}-w{self.workers}.log", "w")
        cmd = command(self.name, self.port, self.workers)
        started = time.monotonic()
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        request = urllib.request.Request(self.base_url + self.probe_path, headers=self.probe_headers)
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {log.name}")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        self.startup_seconds = time.monotonic() - started
                        return
            except urllib.error.HTTPError as exc:
                raise RuntimeError(f"{self.name} answered {exc.code} to the probe: {exc.read()[:300]!r}") from None
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer 200 within {timeout}s; see {log.name}")

    def pids(self) -> list[int]:
        """The server process and, with workers, its worker processes."""
        if self.process is None:
            return []
        found = [self.process.pid]
        for pid in list(found):
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                found += [int(child) for child in children.read_text().split()]
        return found

    def peak_rss_mb(self) -> dict[int, float]:
        """Peak resident set size (VmHWM) of each process so far, in MiB."""
        peaks = {}
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[pid] = int(line.split()[1]) / 1024
            except OSError:
                continue
        return peaks

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server and its workers."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the workers, or the server itself."""
        pids = self.pids()
        return pids[1:] if len(pids) > 1 else pids

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def cli_json(env: dict[str, str], *argv: str) -> dict:
    """`sessions-api ARGV --json` in `env`, as its output (the product's own setup path)."""
    done = subprocess.run(
        [*sessions_api_command(), *argv, "--json"], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def serve_ours(env: dict[str, str], log: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`sessions-api serve` on a free port of 127.0.0.1 in `env`, once it answers: the process
    and its origin (http://127.0.0.1:PORT)."""
    port = free_port()
    process = subprocess.Popen(
        [*sessions_api_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    origin = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(origin + "/healthz", timeout=1)
            return process, origin
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: the server did not start: {log.read_text()[-2000:]}")
