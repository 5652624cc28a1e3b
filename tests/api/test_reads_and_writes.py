"""Reads never wait for writers: while another process holds the write lock, every read
answers at once, a write answers 503 after the lock timeout, and all is well once it is gone."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from sessions_api.core.settings import Settings
from sessions_api.web.app import create_app
from tests.support.api import DEVICES, ORGANIZATIONS, SESSIONS, assert_error

LOCK_TIMEOUT_MS = 1500


@contextmanager
def write_lock_held_elsewhere(database_url: str) -> Iterator[None]:
    """Another connection holds what every session write needs: SQLite's write lock, or on
    PostgreSQL a lock on the sessions table that lets readers in and no writer."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        holder.execute("LOCK TABLE sessions IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


async def _timed(request) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


def test_reads_answer_at_once_while_a_write_waits_for_the_lock(settings: Settings, world):
    alice = world.member()
    world.sessions(alice.personal, alice.user, [None])  # a live session, and its device
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    (session,) = [row for row in _list(settings, alice)]
    # Every read's key is due for a last-use write: that write must not hold the read up either.
    app = create_app(
        settings.replace(
            sqlite_busy_timeout_ms=LOCK_TIMEOUT_MS, db_lock_timeout_ms=LOCK_TIMEOUT_MS, key_last_used_interval=0
        )
    )
    reads = [SESSIONS, f"{SESSIONS}/{session['id']}", DEVICES, ORGANIZATIONS]

    async def while_locked():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            write = asyncio.create_task(_timed(client.post(SESSIONS, json={"platform": "ios"}, headers=alice.headers)))
            await asyncio.sleep(0.2)  # the write is waiting for the lock by now
            answered = [await _timed(client.get(path, headers=alice.headers)) for path in reads * 3]
            return answered, await write

    with write_lock_held_elsewhere(settings.database_url):
        answered, (written, write_seconds) = asyncio.run(while_locked())

    for response, seconds in answered:
        assert response.status_code == 200, response.text
        assert seconds < LOCK_TIMEOUT_MS / 1000 / 3, f"a read waited {seconds:.2f}s"
    assert_error(written, 503, "unavailable")
    assert int(written.headers["Retry-After"]) > 0
    assert write_seconds >= LOCK_TIMEOUT_MS / 1000 * 0.8

    async def after():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return (
                await client.post(SESSIONS, json={"platform": "ios"}, headers=alice.headers),
                await client.get(SESSIONS, headers=alice.headers),
            )

    started, listed = asyncio.run(after())
    assert started.status_code == 201, started.text
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2


def _list(settings: Settings, member) -> list[dict]:
    from starlette.testclient import TestClient

    with TestClient(create_app(settings)) as client:
        return client.get(SESSIONS, headers=member.headers).json()["data"]


@pytest.mark.parametrize("path_kind", ["list", "one"])
def test_a_read_whose_key_is_due_a_last_use_write_does_not_wait_for_the_lock(settings, world, path_kind):
    alice = world.member()
    app = create_app(
        settings.replace(
            sqlite_busy_timeout_ms=LOCK_TIMEOUT_MS, db_lock_timeout_ms=LOCK_TIMEOUT_MS, key_last_used_interval=0
        )
    )
    path = SESSIONS if path_kind == "list" else ORGANIZATIONS

    async def read():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return await _timed(client.get(path, headers=alice.headers))

    with write_lock_held_elsewhere(settings.database_url):
        response, seconds = asyncio.run(read())
    assert response.status_code == 200
    assert seconds < LOCK_TIMEOUT_MS / 1000 / 3
