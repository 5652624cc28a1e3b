"""Exact cursor pagination: newest first, no gap, no repeat, whatever the timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from sessions_api.core import db
from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.models import Role, sessions
from tests.support.api import SESSIONS, list_all

T0 = datetime(2026, 5, 17, 12, 0, tzinfo=UTC)


@pytest.fixture
def alice(world):
    return world.member()


def _created(session: dict) -> datetime:
    return parse_rfc3339(session["createdAt"])


def test_pages_are_newest_first_and_the_last_has_no_cursor(client, world, alice):
    world.sessions(alice.personal, alice.user, [T0 + timedelta(seconds=s) for s in range(5)])
    first = client.get(SESSIONS, params={"limit": 3}, headers=alice.headers).json()
    assert [_created(s) for s in first["data"]] == [T0 + timedelta(seconds=s) for s in (4, 3, 2)]
    assert first["object"] == "list"
    last = client.get(SESSIONS, params={"limit": 3, "before": first["nextCursor"]}, headers=alice.headers).json()
    assert [_created(s) for s in last["data"]] == [T0 + timedelta(seconds=1), T0]
    assert "nextCursor" not in last


def test_a_page_that_is_exactly_full_has_no_cursor_when_nothing_follows(client, world, alice):
    world.sessions(alice.personal, alice.user, [T0 + timedelta(seconds=s) for s in range(3)])
    body = client.get(SESSIONS, params={"limit": 3}, headers=alice.headers).json()
    assert len(body["data"]) == 3 and "nextCursor" not in body


def test_the_default_limit_is_100(client, world, alice):
    world.sessions(alice.personal, alice.user, [T0 + timedelta(seconds=s) for s in range(101)])
    body = client.get(SESSIONS, headers=alice.headers).json()
    assert len(body["data"]) == 100 and "nextCursor" in body


def test_thousands_of_sessions_in_one_instant_are_each_seen_once(client, world, alice):
    world.sessions(alice.personal, alice.user, [T0] * 3000)
    seen = list_all(client, alice.headers, limit=500)
    assert len(seen) == 3000
    assert len({session["id"] for session in seen}) == 3000
    created = [_created(session) for session in seen]
    assert created == sorted(created, reverse=True) and len(set(created)) == 3000
    # Moved on by a microsecond each: the 3000 fill [T0, T0 + 2999 µs].
    assert min(created) == T0 and max(created) == T0 + timedelta(microseconds=2999)


@pytest.mark.parametrize("limit", [1, 7, 500])
def test_walking_every_page_sees_each_session_once(client, world, alice, limit):
    instants = [T0 + timedelta(milliseconds=ms // 3) for ms in range(300)]  # groups of three share a ms
    world.sessions(alice.personal, alice.user, instants)
    seen = list_all(client, alice.headers, limit=limit)
    assert len(seen) == 300 and len({session["id"] for session in seen}) == 300


def test_sessions_created_while_paging_are_neither_skipped_nor_repeated(client, world, alice):
    world.sessions(alice.personal, alice.user, [T0] * 50 + [T0 + timedelta(seconds=1)] * 50)
    existing = {s["id"] for s in list_all(client, alice.headers, limit=100)}
    seen: list[dict] = []
    query = {"limit": 9}
    while True:
        body = client.get(SESSIONS, params=query, headers=alice.headers).json()
        seen.extend(body["data"])
        # New sessions arrive between every two pages: now, and back at the same instants.
        world.sessions(alice.personal, alice.user, [None, T0 + timedelta(seconds=1)])
        if "nextCursor" not in body:
            break
        query["before"] = body["nextCursor"]
    ids = [session["id"] for session in seen]
    assert len(ids) == len(set(ids)), "a session was repeated"
    assert existing <= set(ids), "a session that existed at the start was skipped"


def test_new_sessions_are_newer_than_every_listed_one(client, world, alice):
    future = datetime.now(UTC) + timedelta(days=1)
    world.sessions(alice.personal, alice.user, [future])
    world.sessions(alice.personal, alice.user, [None])  # "now" must not land behind the cursor
    newest, older = client.get(SESSIONS, params={"limit": 2}, headers=alice.headers).json()["data"]
    assert _created(newest) > _created(older) == future


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ("2026-05-17T12:00:00.000002Z", 2),
        ("2026-05-17T12:00:00.000002+00:00", 2),
        ("2026-05-17T14:00:00.000002+02:00", 2),
        ("2026-05-17T06:30:00.000002-05:30", 2),
        ("2026-05-17t12:00:00.000002z", 2),
        ("2026-05-17T12:00:00.0000021Z", 3),  # 2.1 µs: the session at 2 µs is strictly before it
        ("2026-05-17T12:00:00.000002000Z", 2),
        ("2026-05-17T12:00:00.0000019Z", 2),
        ("2026-05-17T12:00:00Z", 0),
        ("2026-05-17T12:00:00.5Z", 5),
        ("9999-12-31T23:59:59.999999-01:00", 5),
        ("0001-01-01T00:00:00+01:00", 0),
    ],
)
def test_before_accepts_every_rfc3339_form_and_compares_exactly(client, world, alice, before, expected):
    world.sessions(alice.personal, alice.user, [T0 + timedelta(microseconds=us) for us in range(5)])
    response = client.get(SESSIONS, params={"before": before}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == expected


def test_response_timestamps_are_utc_with_z_and_microseconds(client, world, alice):
    world.sessions(alice.personal, alice.user, [T0], released=[T0 + timedelta(minutes=5)])
    world.sessions(alice.personal, alice.user, [T0 + timedelta(seconds=1)], released=[None])
    live, released = client.get(SESSIONS, headers=alice.headers).json()["data"]
    assert live["releasedAt"] is None
    assert released["createdAt"] == "2026-05-17T12:00:00.000000Z"
    assert released["releasedAt"] == "2026-05-17T12:05:00.000000Z"


def test_organizations_page_independently(client, world, alice):
    team = world.organization()
    bob = world.member(of=[(team, Role.readwrite)])
    world.sessions(alice.personal, alice.user, [T0] * 10)
    world.sessions(team, bob.user, [T0] * 10)  # the same instants are free in another organization
    assert len(list_all(client, alice.headers, limit=3)) == 10
    team_sessions = list_all(client, bob.acting_on(team.id), limit=3)
    assert len(team_sessions) == 10 and _created(team_sessions[-1]) == T0


def test_the_page_query_walks_the_organization_index(world, alice):
    other = world.member()
    world.sessions(alice.personal, alice.user, [T0] * 2000)
    world.sessions(other.personal, other.user, [T0] * 2000)
    # The very statement the endpoint runs.
    statement, values = sessions.page_statement(alice.personal.id, 100, T0 + timedelta(seconds=1))
    query = statement.params(**values)
    with db.reading() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "USING INDEX" in plan and "(organization_id=? AND created_at<?)" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort step: rows come out of the index in order
        else:
            conn.execute(text("ANALYZE sessions"))
            plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
            assert "Index Scan Backward using uq_sessions_organization_created_at" in plan, plan
            assert "Sort" not in plan and "Seq Scan on sessions" not in plan, plan
