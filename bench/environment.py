"""What every benchmark shares: where its data goes, the machine and commit it ran on, a clock
for its reports, and a database reset to empty (bench.run, bench.writes, bench.streams, ...)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench.servers import ROOT

DATA = ROOT / "bench" / ".data"


def now() -> str:
    """This instant, to the second: when a run started or ended."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return done.stdout.strip()


def redact(url: str) -> str:
    return url.replace(str(ROOT) + "/", "")


def machine() -> dict:
    versions = {}
    for package in ("connexion", "fastapi", "starlette", "sqlmodel", "sqlalchemy", "pydantic", "uvicorn", "orjson"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001
            versions[package] = None
    wrk = shutil.which("wrk")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "handlers", "models", "sessions_api", "openapi")),
        "wrk": subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if wrk
        else None,
        "versions": versions,
        "loadavg_at_start": loadavg(),
    }


def sqlite_path(url: str) -> Path | None:
    return Path(url.split("///", 1)[1]) if url.startswith("sqlite") else None


def pg_admin(url: str):
    import psycopg

    base, _, name = url.replace("postgresql+psycopg://", "postgresql://").rpartition("/")
    return psycopg.connect(f"{base}/postgres", autocommit=True), name.split("?")[0]


def reset_database(url: str) -> None:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin, name = pg_admin(url)
    if not name.startswith("bench"):
        raise SystemExit(f"bench: refusing to drop the database {name!r}: give one whose name starts with 'bench'")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
