"""A busy endpoint's backlog drains as fast as its concurrency allows, not one claim per poll:
the sender claims again as soon as an attempt ends, and a request that writes to the outbox
wakes it. The poll interval here is far longer than the test may take, so only those two
wake-ups can deliver in time; the per-endpoint bound still holds."""

from __future__ import annotations

import threading
import time

import pytest

from sessions_api.core.settings import Settings
from tests.support.api import SESSIONS, WEBHOOK_ENDPOINTS
from tests.support.receiver import receiving

POLL_SECONDS = 60.0
CONCURRENCY = 2
DEVICES = 6


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(
        webhook_allow_private=True,
        webhook_poll_seconds=POLL_SECONDS,
        webhook_endpoint_concurrency=CONCURRENCY,
        webhook_timeout_seconds=5,
    )


def test_a_backlog_to_one_endpoint_goes_out_without_waiting_for_polls(client, world, team, admin):
    headers = admin.acting_on(team.id)
    for n in range(DEVICES):
        world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2")
    at_once, most_at_once, lock = 0, 0, threading.Lock()

    def slow_ok(_path: str, _n: int) -> tuple[int, float]:
        nonlocal at_once, most_at_once
        with lock:
            at_once += 1
            most_at_once = max(most_at_once, at_once)
        time.sleep(0.05)  # a receiver that takes a moment: attempts overlap if they may
        with lock:
            at_once -= 1
        return 204, 0.0

    with receiving(slow_ok) as receiver:
        body = {"url": receiver.url("/hook"), "events": ["session.started", "session.released"]}
        assert client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).status_code == 201
        started = [client.post(SESSIONS, json={"platform": "ios"}, headers=headers).json() for _ in range(DEVICES)]
        for session in started:
            assert client.post(f"{SESSIONS}/{session['id']}/release", headers=headers).status_code == 200
        delivered = receiver.wait_for("/hook", 2 * DEVICES, timeout=POLL_SECONDS / 3)

    assert len({delivery.webhook_id for delivery in delivered}) == 2 * DEVICES
    assert most_at_once <= CONCURRENCY
