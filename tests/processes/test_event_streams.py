"""Event streams across server processes: what another worker writes reaches a stream in
order, woken by LISTEN/NOTIFY (PostgreSQL) or by each process's check (SQLite); a stream
resumed after its worker was killed and restarted gets exactly what it missed, and a killed
worker's committed events are all in the log."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import Role, api_keys, devices, members, tenancy
from tests.support.live_server import running_server, server_env

pytestmark = pytest.mark.live_server

ROUNDS = 5


def _team(database_url: str) -> tuple[str, str]:
    db.configure(Settings(database_url=database_url))
    user, _ = tenancy.create_user(f"follower-{os.getpid()}@example.com")
    team = tenancy.create_organization("Followed")
    members.add_member(team.id, user.id, Role.readwrite)
    devices.add_device("android", "emulator", "Pixel 9", "15")
    _, secret = api_keys.create_key(user.id, team.id)
    return str(team.id), secret


def _follow(base: str, secret: str, seconds: float, last_event_id: str | None = None) -> list[dict[str, str]]:
    """The messages of one stream, read to its end."""
    headers = {"Authorization": f"Bearer {secret}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    messages, fields = [], {}
    with httpx.stream("GET", f"{base}/events", headers=headers, timeout=seconds + 10) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if not line:
                if "event" in fields:
                    messages.append(fields)
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return messages


def _cycles(base: str, secret: str, rounds: int) -> None:
    """Start and release the team's one device `rounds` times, each request on a new connection
    (so that both workers serve them)."""
    headers = {"Authorization": f"Bearer {secret}"}
    for _ in range(rounds):
        started = httpx.post(f"{base}/sessions", json={"platform": "android"}, headers=headers).json()
        httpx.post(f"{base}/sessions/{started['id']}/release", headers=headers)


def test_a_stream_receives_what_other_workers_write_in_order(private_database_url, tmp_path):
    _team_id, secret = _team(private_database_url)
    env = server_env(
        private_database_url, SESSIONS_API_STREAM_MAX_SECONDS="6", SESSIONS_API_LONG_POLL_CHECK_SECONDS="0.05"
    )
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        received: list = []
        reader = threading.Thread(target=lambda: received.extend(_follow(base, secret, 6)))
        reader.start()
        time.sleep(1.0)
        _cycles(base, secret, ROUNDS)
        reader.join(20)
        logged = httpx.get(
            f"{base}/events", params={"limit": 500}, headers={"Authorization": f"Bearer {secret}"}
        ).json()["data"][::-1]
    assert [message["event"] for message in received] == ["session.started", "session.released"] * ROUNDS
    assert [message["id"] for message in received] == [event["id"] for event in logged][-2 * ROUNDS :]


def test_a_stream_resumed_across_a_killed_worker_misses_and_repeats_nothing(private_database_url, tmp_path):
    _team_id, secret = _team(private_database_url)
    env = server_env(
        private_database_url, SESSIONS_API_STREAM_MAX_SECONDS="3", SESSIONS_API_LONG_POLL_CHECK_SECONDS="0.05"
    )
    with running_server(env, log_path=tmp_path / "first.log") as (base, process):
        received: list = []
        reader = threading.Thread(target=lambda: received.extend(_follow(base, secret, 3)))
        reader.start()
        time.sleep(0.5)
        _cycles(base, secret, 2)
        reader.join(10)
        seen = received[-1]["id"]
        _cycles(base, secret, 2)  # written while no stream follows
        os.kill(process.pid, signal.SIGKILL)  # every answered write was committed: none may be lost
        process.wait(10)
    with running_server(env, log_path=tmp_path / "second.log") as (base, _process):
        resumed = _follow(base, secret, 3, last_event_id=seen)
        logged = httpx.get(
            f"{base}/events", params={"limit": 500}, headers={"Authorization": f"Bearer {secret}"}
        ).json()["data"][::-1]
    ids = [event["id"] for event in logged]
    assert len(logged) == 8 and [event["type"] for event in logged] == ["session.started", "session.released"] * 4
    assert [message["id"] for message in received] == ids[:4]
    assert [message["id"] for message in resumed] == ids[4:]


def test_a_stopping_server_ends_its_streams_at_once(private_database_url, tmp_path):
    """SIGTERM lets requests finish, but does not wait out a stream's five minutes: the stream
    ends at once (its client resumes elsewhere) and the server stops within seconds."""
    _team_id, secret = _team(private_database_url)
    env = server_env(private_database_url, SESSIONS_API_STREAM_MAX_SECONDS="300")
    with running_server(env, log_path=tmp_path / "server.log") as (base, process):
        ended: list = []

        def follow() -> None:
            try:
                _follow(base, secret, 300)
            except httpx.RemoteProtocolError:  # cut mid-stream, as a client sees a dropped connection
                ended.append("cut")

        reader = threading.Thread(target=follow)
        reader.start()
        time.sleep(1.0)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        reader.join(20)
        assert time.monotonic() - began < 10 and ended == ["cut"]
