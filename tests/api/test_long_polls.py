"""Long-polls (`Prefer: wait` on getSessionRequest) are woken by one notifier per process: one
read for all the waiting requests per check (none while PostgreSQL's LISTEN connection is up),
a wake-up at once for a change made anywhere, and a cap on how many one key and one
organization hold open at once."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import event

from sessions_api.core.settings import Settings
from sessions_api.models import Role, queue
from sessions_api.models.api_keys import Principal
from tests.support.api import SESSION_REQUESTS, SESSIONS, assert_error

CHECK_SECONDS = 0.1
WAITERS = 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(
        long_poll_check_seconds=CHECK_SECONDS,
        queue_poll_seconds=60.0,
        max_waits_per_key=WAITERS,
        max_waits_per_organization=WAITERS + 1,
    )


def _queued(client, member, team, count):
    holding = client.post(SESSIONS, json={"platform": "ios"}, headers=member.acting_on(team.id))
    assert holding.status_code == 201, holding.text  # the one device: the others wait
    ids = []
    for _ in range(count):
        answer = client.post(
            SESSIONS, json={"platform": "ios", "queue": {"maxWaitSeconds": 600}}, headers=member.acting_on(team.id)
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    return ids


def _long_poll(client, member, team, request_id, wait, answers, index):
    headers = {**member.acting_on(team.id), "Prefer": f"wait={wait}"}
    answers[index] = client.get(f"{SESSION_REQUESTS}/{request_id}", headers=headers)


def _in_threads(target, count):
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_waiting_requests_cost_one_read_per_check_not_one_each(client, app, world, team, writer):
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    request_ids = _queued(client, writer, team, WAITERS)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if "session_requests" in statement:
            statements.append(statement)

    engine = app.state.database.engine
    event.listen(engine, "before_cursor_execute", count)
    answers: dict[int, object] = {}
    try:
        threads = _in_threads(lambda i: _long_poll(client, writer, team, request_ids[i], 1, answers, i), WAITERS)
        for thread in threads:
            thread.join(timeout=10)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert all(answer.json()["status"] == "queued" for answer in answers.values())  # type: ignore[attr-defined]
    # Each long-poll reads its request twice (before and after); the checks read them together.
    polled_one_by_one = WAITERS * (1 / CHECK_SECONDS)
    assert len(statements) < polled_one_by_one, len(statements)


def test_a_change_wakes_the_wait_at_once_wherever_it_is_made(client, world, team, writer):
    """On PostgreSQL the change's NOTIFY wakes it (no check runs while it listens); on
    SQLite this process's next check does."""
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    (request_id,) = _queued(client, writer, team, 1)
    answers: dict[int, object] = {}
    (thread,) = _in_threads(lambda i: _long_poll(client, writer, team, request_id, 30, answers, i), 1)
    time.sleep(0.3)  # it waits
    caller = Principal(writer.user.id, writer.key_id, team.id, Role.readwrite, None)
    queue.cancel(caller, uuid.UUID(request_id))  # as another process would: no nudge here
    thread.join(timeout=20)
    assert not thread.is_alive()
    answer = answers[0].json()  # type: ignore[attr-defined]
    assert (answer["status"], answer["cancelReason"]) == ("cancelled", "caller")


def _all_at_once(client, team, members, request_id):
    """A 30 s long-poll on the request for each of `members` at once; cancels the request once
    the refused ones have answered, and returns every answer."""
    answers: dict[int, object] = {}
    threads = _in_threads(lambda i: _long_poll(client, members[i], team, request_id, 30, answers, i), len(members))
    deadline = time.monotonic() + 20
    while not any(answer.status_code == 429 for answer in answers.values()) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    cancelled = client.post(f"{SESSION_REQUESTS}/{request_id}/cancel", headers=members[0].acting_on(team.id))
    assert cancelled.status_code == 200  # a cancel in this process wakes its waiters at once
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()
    return list(answers.values())


def test_a_key_and_an_organization_hold_a_bounded_number_of_waits(client, world, team, writer):
    other_writer = world.member(of=[(team, Role.readwrite)])
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    first, second = _queued(client, writer, team, 2)

    answers = _all_at_once(client, team, [writer] * (WAITERS + 1), first)
    refused = [answer for answer in answers if answer.status_code == 429]  # type: ignore[attr-defined]
    assert len(refused) == 1 and len(answers) == WAITERS + 1
    assert "SESSIONS_API_MAX_WAITS_PER_KEY" in assert_error(refused[0], 429, "too_many_waits")["error"]["message"]
    assert int(refused[0].headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
    woken = [answer.json()["status"] for answer in answers if answer.status_code == 200]  # type: ignore[attr-defined]
    assert woken == ["cancelled"] * WAITERS

    # The organization's keys share its budget: one more than a key's, so one of six is refused.
    answers = _all_at_once(client, team, [writer] * WAITERS + [other_writer] * 2, second)
    refused = [answer for answer in answers if answer.status_code == 429]  # type: ignore[attr-defined]
    assert len(refused) == 1
    message = assert_error(refused[0], 429, "too_many_waits")["error"]["message"]
    assert "SESSIONS_API_MAX_WAITS_PER_ORGANIZATION" in message
    # Without Prefer: wait every key is answered at once, whatever the budget.
    assert client.get(f"{SESSION_REQUESTS}/{first}", headers=writer.acting_on(team.id)).status_code == 200
