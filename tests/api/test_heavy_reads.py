"""Heavy reads (core.heavy_reads): a usage report and a filter on several tags run on threads,
within their organization's budget of heavy reads at once and a time limit; bounded reads do
not count against either."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sessions_api.core import db, heavy_reads, resources
from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc
from sessions_api.models import Role, session_import
from sessions_api.web.app import create_app
from sessions_api.web.operations import SpecError
from tests.support.api import SESSIONS, assert_error, list_all, organization_path

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The budget these tests run with: small, so that holding it takes one admission.
BUDGET = 1


@pytest.fixture
def settings(settings, request):
    marker = request.node.get_closest_marker("report_timeout")
    timeout = marker.args[0] if marker else settings.report_timeout_seconds
    return settings.replace(max_heavy_reads_per_organization=BUDGET, report_timeout_seconds=timeout)


@pytest.fixture
def reader(world, team):
    return world.member(of=[(team, Role.readonly)])


def _usage(client, member, organization, **params):
    query = {"from": format_utc(T0), "to": format_utc(T0 + timedelta(days=30)), **params}
    return client.get(f"{organization_path(organization.id)}/usage", params=query, headers=member.headers)


def _import_tagged(world, team, member, tag_lists: list[list[str]]) -> None:
    device = world.device()
    lines = [
        json.dumps(
            {
                "organization": str(team.id),
                "user": str(member.user.id),
                "device": str(device.id),
                "createdAt": format_utc(T0 + timedelta(minutes=index)),
                "releasedAt": format_utc(T0 + timedelta(minutes=index, seconds=30)),
                "tags": tags,
            }
        )
        for index, tags in enumerate(tag_lists)
    ]
    session_import.import_sessions(lines)


def test_an_organization_past_its_budget_of_heavy_reads_gets_429_and_others_are_served(client, app, world, team, admin):
    other_team = world.organization("Other")
    other_admin = world.member(of=[(other_team, Role.admin)])
    with app.state.heavy_reads.admit(team.id):  # as a report of the team's still running would
        refused = _usage(client, admin, team)
        assert_error(refused, 429, "too_many_heavy_reads")
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["Cache-Control"] == "no-store"
        assert _usage(client, other_admin, other_team).status_code == 200
        # A bounded read of the same organization spends nothing of the budget.
        assert client.get(SESSIONS, params={"tag": "one"}, headers=admin.acting_on(team.id)).status_code == 200
        several = client.get(SESSIONS, params={"tag": ["one", "two"]}, headers=admin.acting_on(team.id))
        assert_error(several, 429, "too_many_heavy_reads")
        # The same tag twice is one tag: a bounded read.
        same = client.get(SESSIONS, params={"tag": ["one", "one"]}, headers=admin.acting_on(team.id))
        assert same.status_code == 200
    assert _usage(client, admin, team).status_code == 200  # the slot is free again


def test_a_readonly_members_filter_on_several_tags_is_heavy_too(client, app, world, team, reader):
    with app.state.heavy_reads.admit(team.id):
        answer = client.get(SESSIONS, params={"tag": ["common", "rare"]}, headers=reader.acting_on(team.id))
    assert_error(answer, 429, "too_many_heavy_reads")


@pytest.mark.report_timeout(0.000001)
def test_a_report_past_its_time_limit_answers_503_report_timeout(client, world, team, admin):
    world.sessions(team, admin.user, [T0 + timedelta(hours=n) for n in range(5)])
    answer = _usage(client, admin, team, granularity="hour")
    body = assert_error(answer, 503, "report_timeout")
    assert "limit of 1e-06 seconds" in body["error"]["message"]
    assert int(answer.headers["Retry-After"]) >= 1
    assert _usage(client, admin, team).status_code == 503  # every report: the limit is the server's


def test_the_time_limit_stops_a_statement_already_running(app):
    """The deadline interrupts a statement in the middle (SQLite's progress handler,
    PostgreSQL's statement_timeout), and the connection serves the next read unlimited."""
    sqlite = app.state.settings.is_sqlite
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        if sqlite
        else "SELECT pg_sleep(30)"
    )
    with pytest.raises(heavy_reads.ReadTimeLimitExceeded), heavy_reads.time_limited(0.2):
        with db.reading() as conn:
            conn.exec_driver_sql(endless).all()
    for _ in range(3):  # the pool hands the same connections out again: no limit is left on them
        with db.reading() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1


def test_a_filter_on_several_tags_reads_the_rarest_first_and_pages_without_gap_or_repeat(client, world, team, admin):
    tag_lists = [
        ["common"] + (["rare"] if index % 7 == 0 else []) + (["odd"] if index % 2 else []) for index in range(60)
    ]
    _import_tagged(world, team, admin, tag_lists)
    expected = [index for index, tags in enumerate(tag_lists) if {"common", "rare"} <= set(tags)]
    for order in (["common", "rare"], ["rare", "common"]):
        seen = list_all(client, admin.acting_on(team.id), limit=2, tag=order)
        assert len(seen) == len(expected) == len({item["id"] for item in seen})
        assert [item["createdAt"] for item in seen] == [
            format_utc(T0 + timedelta(minutes=index)) for index in reversed(expected)
        ]
    three = list_all(client, admin.acting_on(team.id), limit=3, tag=["odd", "common", "rare"])
    assert len(three) == len([i for i in expected if i % 2])
    query = {"tag": ["rare", "common"], "limit": len(expected)}
    last_page = client.get(SESSIONS, params=query, headers=admin.acting_on(team.id))
    assert "nextCursor" not in last_page.json()  # only when more sessions exist


@pytest.mark.parametrize(
    ("removed", "added", "refusal"),
    [
        ("      x-read-cost: bounded\n", "", "listSessions declares no x-read-cost"),
        ("      x-read-cost: bounded\n", "      x-read-cost: cheap\n", "listSessions declares no x-read-cost"),
        ("      x-heavy-when-several: tag\n", "      x-heavy-when-several: limit\n", "names no array parameter"),
    ],
)
def test_a_read_that_declares_no_cost_stops_the_app_at_start(tmp_path, monkeypatch, removed, added, refusal):
    """Every read is declared bounded or heavy: one that says neither never serves."""
    spec = resources.spec_path().read_text()
    changed = spec.replace(removed, added, 1)
    assert changed != spec
    (tmp_path / "sessions.yaml").write_text(changed)
    monkeypatch.setattr(resources, "spec_path", lambda: tmp_path / "sessions.yaml")
    with pytest.raises(SpecError, match=refusal):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/unused.db"))
