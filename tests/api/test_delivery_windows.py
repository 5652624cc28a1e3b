"""Each endpoint's attempts at once adapt to its receiver: they grow while it answers fast and
well, shrink when it slows down or fails, and stop for as long as a 429 or 503 asks
(`Retry-After`); the setting is only the ceiling."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from sessions_api.core import db
from sessions_api.core.outbound import AttemptResult, retry_after_seconds
from sessions_api.models import webhooks
from sessions_api.web.delivery_windows import INITIAL, DeliveryWindows
from tests.support.api import WEBHOOK_ENDPOINTS
from tests.support.receiver import receiving

SLOW_SECONDS = 0.1
OK_FAST = AttemptResult(204, None, 5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _windows(ceiling: int = 64) -> tuple[DeliveryWindows, Clock]:
    clock = Clock()
    return DeliveryWindows(ceiling, SLOW_SECONDS, clock), clock


def test_a_window_doubles_while_answers_are_fast_then_grows_by_one_after_a_halving():
    windows, clock = _windows(ceiling=40)
    endpoint = uuid.uuid4()
    sizes = []
    for _ in range(60):
        windows.note(endpoint, OK_FAST, limited=True)
        sizes.append(windows.size(endpoint))
    assert sizes[INITIAL - 1] == 2 * INITIAL and max(sizes) == 40  # doubled, up to the ceiling
    clock.now += 1
    windows.note(endpoint, AttemptResult(503, "http_status", 5), limited=True)
    assert windows.size(endpoint) == 20
    for _ in range(20):
        windows.note(endpoint, OK_FAST, limited=True)
    assert windows.size(endpoint) == 21  # no longer doubling


@pytest.mark.parametrize(
    "overloaded",
    [
        AttemptResult(None, "timeout", 10_000),
        AttemptResult(None, "connection_refused", 1),
        AttemptResult(500, "http_status", 5),
        AttemptResult(429, "http_status", 5),
        AttemptResult(204, None, 2000),  # a 2xx, but slow
    ],
)
def test_signs_of_overload_halve_a_window_once_per_round_trip(overloaded):
    windows, clock = _windows()
    endpoint = uuid.uuid4()
    for _ in range(INITIAL + 2 * INITIAL):
        windows.note(endpoint, OK_FAST, limited=True)
    assert windows.size(endpoint) == 4 * INITIAL
    clock.now += 100
    windows.note(endpoint, overloaded, limited=True)
    began_before = AttemptResult(overloaded.response_status, overloaded.error, 50)
    windows.note(endpoint, began_before, limited=True)
    assert windows.size(endpoint) == 2 * INITIAL
    clock.now += 100
    for _ in range(10):
        clock.now += 100
        windows.note(endpoint, overloaded, limited=True)
    assert windows.size(endpoint) == 1  # never below one


def test_a_window_that_is_not_full_does_not_grow():
    windows, _ = _windows()
    endpoint = uuid.uuid4()
    for _ in range(100):
        windows.note(endpoint, OK_FAST, limited=False)  # nothing due waited for a slot
    assert windows.size(endpoint) == INITIAL


def test_answers_that_say_nothing_of_load_leave_a_window_as_it_is():
    windows, _ = _windows()
    endpoint = uuid.uuid4()
    for result in (AttemptResult(404, "http_status", 5), AttemptResult(None, "dns_failure", 5)):
        windows.note(endpoint, result, limited=True)
    assert windows.size(endpoint) == INITIAL


def test_retry_after_gives_an_endpoint_no_slot_until_then():
    windows, clock = _windows()
    endpoint, other = uuid.uuid4(), uuid.uuid4()
    windows.note(endpoint, AttemptResult(503, "http_status", 5, retry_after=30), limited=True)
    assert windows.slots().of(endpoint) == 0 and windows.slots().of(other) == INITIAL
    clock.now += 31
    assert windows.slots().of(endpoint) == INITIAL // 2


def test_retry_after_is_read_as_seconds_or_an_http_date_and_bounded():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Mon, 07 Dec 2026 12:00:30 GMT", now) == 30
    assert retry_after_seconds("Mon, 07 Dec 2026 11:00:00 GMT", now) == 0
    assert retry_after_seconds("999999999", now) == 24 * 3600
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


# --- through the server's own sender -------------------------------------------------------


@pytest.fixture
def settings(settings):
    return settings.replace(
        webhook_allow_private=True,
        webhook_poll_seconds=0.05,
        webhook_timeout_seconds=5,
        webhook_slow_answer_seconds=SLOW_SECONDS,
        webhook_retry_schedule="0.2s,0.2s",
    )


class Concurrency:
    """What a receiver saw: how many requests it was answering when each one arrived."""

    def __init__(self, answer) -> None:
        self.at_arrival: list[int] = []
        self.arrived_at: list[float] = []
        self._now, self._lock, self._answer = 0, threading.Lock(), answer

    def __call__(self, path: str, n: int):
        with self._lock:
            self._now += 1
            self.at_arrival.append(self._now)
            self.arrived_at.append(time.monotonic())
        try:
            status, delay, *headers = self._answer(n)
            time.sleep(delay)
            return (status, 0.0, *headers)
        finally:
            with self._lock:
                self._now -= 1


def _subscribe(client, admin, team, receiver) -> None:
    body = {"url": receiver.url("/hook"), "events": ["session.queued"]}
    assert client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id)).status_code == 201


def _write(team, count: int) -> None:
    events = [
        webhooks.Document(team.id, "session.queued", "2026-12-07T00:00:00.000000Z", {"n": n}) for n in range(count)
    ]
    with db.writing() as conn:  # the outbox, as the queue writes it
        webhooks.enqueue_documents(conn=conn, events=events)


def test_a_fast_receiver_gets_more_attempts_at_once_than_the_first_window(client, team, admin):
    seen = Concurrency(lambda n: (204, 0.02))
    with receiving(seen) as receiver:
        _subscribe(client, admin, team, receiver)
        _write(team, 300)
        receiver.wait_for("/hook", 300, timeout=30)
    assert max(seen.at_arrival) > INITIAL


def test_a_receiver_that_slows_down_gets_fewer_attempts_at_once(client, team, admin):
    seen = Concurrency(lambda n: (204, 3 * SLOW_SECONDS))
    with receiving(seen) as receiver:
        _subscribe(client, admin, team, receiver)
        _write(team, 16)
        receiver.wait_for("/hook", 16, timeout=30)
    assert max(seen.at_arrival[:INITIAL]) == INITIAL  # the first window
    assert max(seen.at_arrival[-6:]) <= 2  # halved, then halved again


def test_a_503_with_retry_after_stops_attempts_to_its_endpoint_until_then(client, team, admin):
    seen = Concurrency(lambda n: (503, 0.0, {"Retry-After": "1"}) if n == 1 else (204, 0.0))
    with receiving(seen) as receiver:
        _subscribe(client, admin, team, receiver)
        _write(team, 1)
        receiver.wait_for("/hook", 1, timeout=10)
        _write(team, 1)  # due at once, but the endpoint asked to wait
        receiver.wait_for("/hook", 3, timeout=10)
    # The retry schedule said 0.2 s and the new event was due at once; the receiver asked for 1 s.
    assert seen.arrived_at[1] - seen.arrived_at[0] >= 0.9
