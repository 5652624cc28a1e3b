"""Artifacts through a real server: a 256 MiB upload and download through the file store with
the server's memory flat, and a server killed between an upload and its completion."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import Role, api_keys, devices, members, tenancy
from tests.support.artifacts import Payload
from tests.support.live_server import running_server, server_env
from tests.support.transfers import MiB, ProcessWatch, file_chunks, random_file

pytestmark = pytest.mark.live_server

LARGE = 256 * MiB
# What the server's resident memory may grow by while it moves LARGE bytes each way.
RSS_GROWTH_LIMIT = 50 * MiB


def _member(database_url: str) -> tuple[str, str]:
    """A writer of a team, and its key's secret."""
    db.configure(Settings(database_url=database_url))
    user, _ = tenancy.create_user(f"device-host-{os.getpid()}@example.com")
    team = tenancy.create_organization("Device lab")
    members.add_member(team.id, user.id, Role.readwrite)
    devices.add_device("android", "emulator", "Pixel 9", "15")
    _, secret = api_keys.create_key(user.id, team.id)
    return str(team.id), secret


def test_a_256_mib_artifact_goes_up_and_down_with_the_servers_memory_flat(private_database_url, tmp_path):
    team_id, secret = _member(private_database_url)
    source = tmp_path / "screen.mp4"
    sha256 = random_file(source, LARGE)
    env = server_env(
        private_database_url,
        SESSIONS_API_ARTIFACT_STORE=f"file://{tmp_path / 'store'}",
        SESSIONS_API_MAX_ARTIFACT_BYTES=str(LARGE),
    )
    with running_server(env, log_path=tmp_path / "server.log") as (base, process):
        origin = base.removesuffix("/api/v1")
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=120)
        session_id = api.post("/sessions", json={"platform": "android"}).json()["id"]
        declared = {"type": "video", "name": "screen.mp4", "contentType": "video/mp4", "size": LARGE, "sha256": sha256}
        artifact = api.post(f"/sessions/{session_id}/artifacts", json=declared).json()
        watcher = ProcessWatch(process.pid)
        baseline = watcher.rss()
        with watcher:
            sent = httpx.put(
                origin + artifact["upload"]["url"],
                content=file_chunks(source),
                headers={**artifact["upload"]["headers"], "Content-Length": str(LARGE)},
                timeout=120,
            )
            assert sent.status_code == 204, sent.text
            assert api.post(f"/sessions/{session_id}/artifacts/{artifact['id']}/complete").status_code == 200
            download = api.get(f"/sessions/{session_id}/artifacts/{artifact['id']}").json()["download"]["url"]
            hasher, received = hashlib.sha256(), 0
            with httpx.stream("GET", origin + download, timeout=120) as answer:
                assert answer.status_code == 200
                for chunk in answer.iter_bytes(MiB):
                    hasher.update(chunk)
                    received += len(chunk)
        assert (received, hasher.hexdigest()) == (LARGE, sha256)
        assert watcher.peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew by {(watcher.peak - baseline) / MiB:.0f} MiB"


def test_a_server_killed_between_upload_and_completion_leaves_nothing_half_done(private_database_url, tmp_path):
    team_id, secret = _member(private_database_url)
    store = tmp_path / "store"
    env = server_env(
        private_database_url,
        SESSIONS_API_ARTIFACT_STORE=f"file://{store}",
        SESSIONS_API_ARTIFACT_URL_TTL_SECONDS="2",
        SESSIONS_API_ARTIFACT_UPLOAD_GRACE_SECONDS="0",
        SESSIONS_API_EXPIRY_SWEEP_SECONDS="0.2",
    )
    log = Payload(b"logcat line\n" * 1000)
    with running_server(env, log_path=tmp_path / "first.log") as (base, process):
        origin = base.removesuffix("/api/v1")
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        session_id = api.post("/sessions", json={"platform": "android"}).json()["id"]
        artifacts = [api.post(f"/sessions/{session_id}/artifacts", json=log.declared()).json() for _ in range(2)]
        for artifact in artifacts:
            sent = httpx.put(
                origin + artifact["upload"]["url"], content=log.data, headers=artifact["upload"]["headers"]
            )
            assert sent.status_code == 204
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    started = (tmp_path / "first.log").read_text()
    assert f"artifacts are kept in {store}" in started
    # Several hosts on one PostgreSQL would each keep their own files: serve says so at start.
    assert ("PostgreSQL with a file:// artifact store" in started) == private_database_url.startswith("postgresql")

    with running_server(env, log_path=tmp_path / "second.log") as (base, _process):
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        resumed, abandoned = artifacts
        # Its client comes back: the bytes it sent are there, and complete as if nothing happened.
        completed = api.post(f"/sessions/{session_id}/artifacts/{resumed['id']}/complete")
        assert completed.status_code == 200 and completed.json()["status"] == "available"
        # Its client never does: one sweep after its URL expired, it failed and its bytes are gone.
        deadline = time.monotonic() + 10
        while api.get(f"/sessions/{session_id}/artifacts/{abandoned['id']}").json()["status"] != "failed":
            assert time.monotonic() < deadline, "the abandoned upload was not swept"
            time.sleep(0.2)
        key = Path(store / "objects" / team_id / session_id / abandoned["id"])
        assert not key.exists()
        plan = api.get(f"/organizations/{team_id}").json()["plan"]
        assert plan["storedBytes"] == len(log.data)
        assert api.get(f"/sessions/{session_id}").json()["artifactCount"] == 1
