"""Artifacts through a real server: a 256 MiB upload and download through the file store with
the server's memory flat, and a server killed between an upload and its completion."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import Role, api_keys, devices, members, tenancy
from tests.support.artifacts import Payload
from tests.support.live_server import running_server, server_env
from tests.support.s3_server import BUCKET, REGION
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


def test_several_workers_share_an_s3_store_and_its_retention(private_database_url, tmp_path, s3_server):
    """Two workers on one database and one S3 store (as several hosts run): an artifact
    declared through one is completed and read through any, its bytes go to and from the store
    itself at presigned URLs, and the sweep of whichever worker runs first ends it on time."""
    team_id, secret = _member(private_database_url)
    env = server_env(
        private_database_url,
        **s3_server.credentials,
        SESSIONS_API_ARTIFACT_STORE=f"s3://{BUCKET}/workers-{uuid.uuid4().hex[:8]}",
        SESSIONS_API_S3_ENDPOINT_URL=s3_server.endpoint_url,
        SESSIONS_API_S3_REGION=REGION,
        SESSIONS_API_ARTIFACT_RETENTION_DAYS=str(3 / 86400),  # three seconds
        SESSIONS_API_EXPIRY_SWEEP_SECONDS="0.5",
    )
    video = Payload(os.urandom(3 * MiB), type="video", name="screen.mp4", content_type="video/mp4")
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        # New connections each time: the workers share the port, so requests land on both.
        def call(method: str, path: str, **kwargs):
            return httpx.request(method, base + path, headers={"Authorization": f"Bearer {secret}"}, **kwargs)

        session_id = call("POST", "/sessions", json={"platform": "android"}).json()["id"]
        artifact = call("POST", f"/sessions/{session_id}/artifacts", json=video.declared()).json()
        assert artifact["upload"]["url"].startswith(s3_server.endpoint_url)  # the store's own URL
        sent = httpx.put(artifact["upload"]["url"], content=video.data, headers=artifact["upload"]["headers"])
        assert sent.status_code == 200, sent.text
        for _ in range(3):  # idempotent, whichever worker answers
            completed = call("POST", f"/sessions/{session_id}/artifacts/{artifact['id']}/complete")
            assert completed.status_code == 200 and completed.json()["status"] == "available"
        download = call("GET", f"/sessions/{session_id}/artifacts/{artifact['id']}").json()["download"]["url"]
        part = httpx.get(download, headers={"Range": "bytes=0-1023"})
        assert part.status_code == 206 and part.content == video.data[:1024]
        assert "attachment" in part.headers["content-disposition"] and part.headers["content-type"] == "video/mp4"
        deadline = time.monotonic() + 15
        while call("GET", f"/sessions/{session_id}/artifacts/{artifact['id']}").json()["status"] != "expired":
            assert time.monotonic() < deadline, "the artifact outlived its retention"
            time.sleep(0.3)
        assert httpx.get(download).status_code == 404  # its bytes went with it
        assert call("GET", f"/organizations/{team_id}").json()["plan"]["storedBytes"] == 0
