"""Every page is a bounded read: the plans both databases choose for every list query, with
every filter and combination, read an index that matches the query, never the organization's
whole history.

The history is made through the import path (the product's own), which gathers the planner's
statistics as it ends (SQLite keeps none by itself), so that each planner chooses as it would
in production. Then each query is
planned (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN (FORMAT JSON)` on PostgreSQL):

- the table is searched through an index whose condition names every equality the filters
  give (organization, user, device, platform, audit event type, actor), or through the
  partial index of live sessions (never more than the fleet has devices);
- the order comes from that index: no sort of what the filters matched (but the live
  sessions, all read, are sorted);
- no scan of the table (PostgreSQL rightly scans or sorts a test's small tables, so those are
  priced out for the test: the plan then shows the index it would read at production's sizes).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Select, bindparam, event, select

from sessions_api.core import db
from sessions_api.core.compiled_reads import driver_statement
from sessions_api.core.timestamps import format_utc
from sessions_api.models import Role, audit, session_import, sessions
from sessions_api.models.audit import EventFilters
from sessions_api.models.tables import AuditEventType, SessionRecord
from tests.support.api import API, UNREACHABLE_HOOK, WEBHOOK_ENDPOINTS, list_all

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USERS, DEVICES, SESSIONS_PER_USER = 30, 40, 60
BUILDS = [f"build-{n}" for n in range(12)]
RESULTS = ["passed", "failed", "error", None]
TAGS = ["smoke", "nightly", "checkout", "login", "slow", "ios18", "beta", "flaky"]


@pytest.fixture
def history(world, team, admin):
    """An organization with a history: users, devices of two platforms, released sessions and
    a few live ones, and audit events; its statistics gathered by the import."""
    rng = random.Random(7)
    users = [world.member(of=[(team, Role.readwrite)]) for _ in range(USERS)]
    devices = [
        world.device(platform="ios" if n % 3 == 0 else "android", name=f"Device {n}", os_version="1")
        for n in range(DEVICES)
    ]
    lines, at = [], T0
    for member in users:
        for _ in range(SESSIONS_PER_USER):
            at += timedelta(seconds=rng.randint(1, 600))
            device = rng.choice(devices)
            record = {"organization": str(team.id), "user": str(member.user.id), "device": str(device.id)}
            record |= {"createdAt": format_utc(at), "releasedAt": format_utc(at + timedelta(minutes=5))}
            record |= {"build": rng.choice(BUILDS), "result": rng.choice(RESULTS), "tags": rng.sample(TAGS, 2)}
            lines.append(json.dumps(record))
    for member, device in zip(users[:5], devices[:5], strict=True):  # a few live ones
        lines.append(json.dumps({"organization": str(team.id), "user": str(member.user.id), "device": str(device.id)}))
    session_import.import_sessions(lines)  # which gathers the planner's statistics itself
    return {"team": team, "user": users[3].user, "device": devices[3], "before": T0 + timedelta(days=30)}


def _plan(statement: Select[Any], values: dict[str, Any]) -> list[Any]:
    """The plan the database chooses for `statement` with `values`, as the driver runs it."""
    sql, parameters = driver_statement(statement, values, db.engine().dialect)
    with db.reading() as conn:
        if conn.dialect.name == "sqlite":
            return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)]
        return _postgresql_plan(conn, sql, parameters)


def _postgresql_plan(conn: Any, sql: str, parameters: Any) -> Any:
    # A test's tables are small, and for a few hundred rows PostgreSQL rightly prefers to scan
    # or to sort. Pricing those out shows the index it would read at production's sizes, and
    # where no index serves the query, the scan or the sort still shows (at its price).
    for method in ("seqscan", "bitmapscan", "sort"):
        conn.exec_driver_sql(f"SET LOCAL enable_{method} = off")
    return conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, parameters).scalar()


def _nodes(plan: Any) -> list[dict[str, Any]]:
    pending, nodes = [plan[0]["Plan"]], []
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return nodes


# The partial indexes of live sessions (WHERE released_at IS NULL): never more entries than
# the fleet has devices, however long the history.
LIVE_INDEXES = ("ix_sessions_live_organization_created_at", "ix_sessions_live_expires_at", "uq_sessions_live_device_id")


def assert_bounded(plan: Any, table: str, keyed_by: set[str], *, live: bool = False, sorted_ok: bool = False) -> None:
    """The plan reads `table` through an index keyed by every column of `keyed_by` in the
    index's order, or (`live`) through a partial index of live sessions; `sorted_ok`: the
    rows it matched may be sorted (a combination without an index of its own)."""
    if isinstance(plan, list) and plan and isinstance(plan[0], str):  # SQLite
        searches = [line for line in plan if re.match(rf"(SEARCH|SCAN) {table}\b", line)]
        assert searches and not any(line.startswith(f"SCAN {table}") for line in searches), plan
        search = searches[0]
        if live and any(f"USING INDEX {index} " in search for index in LIVE_INDEXES):
            return  # the live sessions, all of them (bounded by the fleet), then sorted
        assert sorted_ok or not any("TEMP B-TREE" in line for line in plan), plan
        condition = search.split("(", 1)[1] if "(" in search else ""
        assert all(f"{column}=?" in condition for column in keyed_by), (keyed_by, plan)
        return
    nodes = _nodes(plan)
    reads = [node for node in nodes if node.get("Relation Name") == table]
    assert reads, plan
    for read in reads:
        assert read["Node Type"] in ("Index Scan", "Index Only Scan"), json.dumps(plan)
        if live and read["Index Name"] in LIVE_INDEXES:
            continue  # the live sessions, all of them (bounded by the fleet), then sorted
        sorts = any(node["Node Type"] in ("Sort", "Incremental Sort") for node in nodes)
        assert sorted_ok or not sorts, json.dumps(plan)
        condition = read.get("Index Cond", "")
        assert all(re.search(rf"\b{column}\b", condition) for column in keyed_by), (keyed_by, json.dumps(plan))


SESSION_FILTERS = list(
    itertools.product([None, "live", "released"], [False, True], [False, True], [False, True], [False, True])
)


def test_every_page_of_sessions_reads_a_matching_index(history):
    """Every combination of listSessions' filters (the history is built once for all of them)."""
    for status, platform, user, device, before in SESSION_FILTERS:
        filters = sessions.SessionFilters(
            status=status,
            platform="ios" if platform else None,
            user_id=history["user"].id if user else None,
            device_id=history["device"].id if device else None,
        )
        statement, values = sessions.page_statement(
            history["team"].id, 100, history["before"] if before else None, filters
        )
        keyed_by = {"organization_id"} | ({"user_id"} if user else set()) | ({"device_id"} if device else set())
        if platform and not device:  # with a device, its platform is the device's (one row)
            keyed_by.add("platform")
        assert_bounded(_plan(statement, values), "sessions", keyed_by, live=status == "live")


def test_every_filter_walks_exactly_what_a_brute_force_filter_finds(client, history, admin):
    """Paging each combination from the first page to the last gives the brute-force answer
    over the whole history: nothing skipped, nothing repeated, newest first."""
    with db.reading() as conn:
        rows = conn.execute(select(SessionRecord).where(SessionRecord.organization_id == history["team"].id)).all()
    everything = sorted(rows, key=lambda row: row.created_at, reverse=True)
    headers = admin.acting_on(history["team"].id)
    for status, platform, user, device, _ in SESSION_FILTERS[::2]:
        params = {
            "status": status,
            "platform": "ios" if platform else None,
            "user": str(history["user"].id) if user else None,
            "device": str(history["device"].id) if device else None,
        }
        expected = [
            str(row.id)
            for row in everything
            if (status is None or (row.released_at is None) == (status == "live"))
            and (not platform or row.platform == "ios")
            and (not user or row.user_id == history["user"].id)
            and (not device or row.device_id == history["device"].id)
        ]
        walked = list_all(client, headers, limit=37, **{name: value for name, value in params.items() if value})
        assert [item["id"] for item in walked] == expected, params


# The session facts' filters, each with what the plan must be keyed by: (table, columns). A
# combination without an index of its own (a tag and a build, a user and a build) walks one
# of its filters' indexes and sorts what it matched: never the organization's history.
FACT_FILTERS = {
    "build": ({"build": "build-3"}, [("sessions", {"organization_id", "build"})]),
    "result": ({"result": "failed"}, [("sessions", {"organization_id", "result"})]),
    "build and result": (
        {"build": "build-3", "result": "failed"},
        [("sessions", {"organization_id", "build", "result"})],
    ),
    "a tag": ({"tags": ("smoke",)}, [("session_tags", {"organization_id", "tag"})]),
    "two tags": ({"tags": ("smoke", "flaky")}, [("session_tags", {"organization_id", "tag"})]),
    "a tag and a build": (
        {"tags": ("smoke",), "build": "build-3"},
        [("session_tags", {"organization_id", "tag"}), ("sessions", {"organization_id", "build"})],
    ),
    "a user and a build": (
        {"build": "build-3", "user": True},
        [("sessions", {"organization_id", "build"}), ("sessions", {"organization_id", "user_id"})],
    ),
}


@pytest.mark.parametrize("name", list(FACT_FILTERS))
def test_every_page_of_sessions_by_their_facts_reads_a_matching_index(history, name):
    """A build's, a result's and a tag's pages (with each status, and deep) walk an index keyed
    by them (for a tag, `session_tags`), never the organization's history; a combination
    without an index of its own walks one of its filters' indexes."""
    given, choices = FACT_FILTERS[name]
    for status, before in itertools.product([None, "live", "released"], [False, True]):
        filters = sessions.SessionFilters(
            status=status,
            build=given.get("build"),
            result=given.get("result"),
            tags=given.get("tags", ()),
            user_id=history["user"].id if given.get("user") else None,
        )
        statement, values = sessions.page_statement(
            history["team"].id, 100, history["before"] if before else None, filters
        )
        plan = _plan(statement, values)
        if status == "live" and _reads_live_index(plan):
            continue  # the live sessions, all of them (bounded by the fleet), then filtered and sorted
        failures = []
        for table, keyed_by in choices:
            try:
                assert_bounded(plan, table, keyed_by, live=status == "live", sorted_ok=len(choices) > 1)
                break
            except AssertionError as exc:
                failures.append(exc)
        else:
            raise AssertionError((name, status, before, failures))


def _reads_live_index(plan: Any) -> bool:
    if isinstance(plan, list) and plan and isinstance(plan[0], str):  # SQLite
        return any(f"USING INDEX {index} " in line for line in plan for index in LIVE_INDEXES)
    return any(node.get("Index Name") in LIVE_INDEXES for node in _nodes(plan))


def test_every_facts_filter_walks_exactly_what_a_brute_force_filter_finds(client, history, admin):
    with db.reading() as conn:
        rows = conn.execute(select(SessionRecord).where(SessionRecord.organization_id == history["team"].id)).all()
    everything = sorted(rows, key=lambda row: row.created_at, reverse=True)
    headers = admin.acting_on(history["team"].id)
    cases = [
        {"build": "build-3"},
        {"result": "failed"},
        {"build": "build-3", "result": "error"},
        {"tag": ["smoke"]},
        {"tag": ["smoke", "flaky"]},
        {"tag": ["nightly"], "build": "build-5", "status": "released"},
        {"tag": ["slow"], "user": str(history["user"].id)},
    ]
    for params in cases:
        expected = [
            str(row.id)
            for row in everything
            if params.get("build") in (None, row.build)
            and params.get("result") in (None, row.result)
            and set(params.get("tag", [])) <= set(json.loads(row.tags))
            and params.get("user") in (None, str(row.user_id))
            and (params.get("status") != "released" or row.released_at is not None)
        ]
        assert expected, params  # the history has some of each
        walked = list_all(client, headers, limit=23, **params)
        assert [item["id"] for item in walked] == expected, params


def test_every_page_of_the_audit_log_reads_a_matching_index(history, admin):
    for by_type, by_actor in itertools.product([False, True], repeat=2):
        filters = EventFilters(
            type=AuditEventType.member_added if by_type else None, actor_user_id=admin.user.id if by_actor else None
        )
        captured = _statements_of(lambda filters=filters: audit.list_page(history["team"].id, 100, None, filters))
        keyed_by = {"organization_id"} | ({"type"} if by_type else set()) | ({"actor_user_id"} if by_actor else set())
        for sql, parameters in captured:
            assert_bounded(_plan_text(sql, parameters), "audit_events", keyed_by)


def _statements_of(read) -> list[tuple[str, Any]]:
    """The statements a data-layer read runs through the engine."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(db.engine(), "before_cursor_execute", capture)
    try:
        read()
    finally:
        event.remove(db.engine(), "before_cursor_execute", capture)
    assert seen
    return seen


def _plan_text(sql: str, parameters: Any) -> Any:
    with db.reading() as conn:
        if conn.dialect.name == "sqlite":
            return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)]
        return _postgresql_plan(conn, sql, parameters)


@pytest.mark.parametrize(
    ("path", "table", "keyed_by"),
    [
        ("/api-keys", "api_keys", {"user_id"}),
        ("/api-keys?scope=organization", "api_keys", {"organization_id"}),
        ("/organizations/{team}/members", "memberships", {"organization_id"}),
        ("/webhook-endpoints", "webhook_endpoints", {"organization_id"}),
        ("/webhook-endpoints/{endpoint}/deliveries", "webhook_attempts", {"endpoint_id"}),
    ],
)
def test_every_other_list_reads_a_matching_index(client, history, admin, path, table, keyed_by):
    headers = admin.acting_on(history["team"].id)
    body = {"url": UNREACHABLE_HOOK, "events": ["session.released"]}
    endpoint = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()["id"]
    url = API + path.format(team=history["team"].id, endpoint=endpoint)
    url += ("&" if "?" in url else "?") + "before=2030-01-01T00:00:00Z"
    captured = _statements_of(lambda: client.get(url, headers=headers))
    pages = [(sql, parameters) for sql, parameters in captured if re.search(rf"\bFROM {table}\b", sql)]
    assert pages, captured
    for sql, parameters in pages:
        assert_bounded(_plan_text(sql, parameters), table, keyed_by)


def test_the_plan_check_catches_a_scan(history):
    """The check itself: a filter no index serves (the session's expiry) is caught."""
    statement, values = sessions.page_statement(history["team"].id, 100, None)
    unbounded = statement.where(SessionRecord.expires_at > bindparam("expires_after"))
    with pytest.raises(AssertionError):
        assert_bounded(_plan(unbounded, {**values, "expires_after": T0}), "sessions", {"organization_id", "expires_at"})


@pytest.mark.parametrize("group_by", [None, "platform", "user", "deviceType"])
def test_a_usage_report_reads_its_range_from_the_index_of_session_starts(client, history, admin, group_by):
    """Usage reads the sessions started in its range (and as long before it as a session of the
    organization can last), from the index on (organization_id, created_at): never the history."""
    headers = admin.acting_on(history["team"].id)
    params = {"from": format_utc(T0 + timedelta(days=2)), "to": format_utc(T0 + timedelta(days=3))}
    if group_by:
        params["groupBy"] = group_by
    url = f"{API}/organizations/{history['team'].id}/usage"
    captured = _statements_of(lambda: client.get(url, params=params, headers=headers))
    reports = [(sql, parameters) for sql, parameters in captured if "WITH ran" in sql]
    assert len(reports) == 1, captured
    plan = _plan_text(*reports[0])
    if isinstance(plan[0], str):  # SQLite: the range of starts, and the live sessions
        searches = sorted(line for line in plan if re.match(r"(SEARCH|SCAN) sessions\b", line))
        assert len(searches) == 2, plan
        live, started = searches
        assert live.startswith("SEARCH sessions USING INDEX ix_sessions_live_organization_created_at "), plan
        assert started.startswith("SEARCH ") and started.endswith(
            " (organization_id=? AND created_at>? AND created_at<?)"
        ), plan
    else:
        reads = {
            node["Index Name"]: node["Index Cond"]
            for node in _nodes(plan)
            if node.get("Relation Name") == "sessions" and node["Node Type"] in ("Index Scan", "Index Only Scan")
        }
        assert len(reads) == 2 and len([n for n in _nodes(plan) if n.get("Relation Name") == "sessions"]) == 2, plan
        assert "created_at >=" in reads["uq_sessions_organization_created_at"], reads
        assert "created_at <" in reads["ix_sessions_live_organization_created_at"], reads
