"""Usage in device minutes (getUsage): crafted histories pinned to the second across hours,
midnights and month ends, random histories compared with a brute-force sum, CSV, and the
errors of a bad range."""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, leases, session_import
from tests.support.api import SESSIONS, assert_error, organization_path

T0 = datetime(2026, 11, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def usage_path(organization_id: object) -> str:
    return f"{organization_path(organization_id)}/usage"


@dataclass(frozen=True)
class Ran:
    created: datetime
    released: datetime | None
    user: str
    device: object  # a Device


@pytest.fixture
def devices(world):
    return {
        "ios": world.device(platform="ios", type="phone", name="iPhone 16", os_version="18.2"),
        "ipad": world.device(platform="ios", type="tablet", name="iPad Air", os_version="18.2"),
        "android": world.device(platform="android", type="phone", name="Pixel 9", os_version="15"),
    }


def imported(team, runs: list[Ran]) -> list[Ran]:
    """The sessions, imported as an operator backfills a history (the product's own path)."""
    lines = []
    for run in runs:
        record = {"organization": str(team.id), "user": run.user, "device": str(run.device.id)}
        record["createdAt"] = format_utc(run.created)
        if run.released is not None:
            record["releasedAt"] = format_utc(run.released)
        else:
            record["expiresAt"] = format_utc(run.created + timedelta(days=30))
        lines.append(json.dumps(record))
    session_import.import_sessions(lines)
    return runs


def get_usage(client, admin, team, **params):
    response = client.get(usage_path(team.id), params=params, headers=admin.acting_on(team.id))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def minutes(delta: timedelta) -> float:
    micros = Decimal(delta // timedelta(microseconds=1))
    return float((micros / 60_000_000).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_a_session_across_midnight_is_split_exactly_between_its_days(client, admin, team, devices):
    user = str(admin.user.id)
    imported(team, [Ran(T0 - timedelta(minutes=30), T0 + timedelta(minutes=45, seconds=20), user, devices["ios"])])
    rows = get_usage(client, admin, team, **{"from": "2026-11-29T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    assert rows == [
        {
            "start": "2026-11-29T00:00:00.000000Z",
            "end": "2026-11-30T00:00:00.000000Z",
            "sessions": 1,
            "deviceMinutes": 30.0,
            "peakConcurrency": 1,
            "artifactBytes": 0,
        },
        {
            "start": "2026-11-30T00:00:00.000000Z",
            "end": "2026-12-01T00:00:00.000000Z",
            "sessions": 0,  # it started the day before
            "deviceMinutes": 45.33,  # 45 min 20 s
            "peakConcurrency": 1,
            "artifactBytes": 0,
        },
    ]


def test_a_month_end_splits_a_session_between_months(client, admin, team, devices):
    user = str(admin.user.id)
    month_end = datetime(2026, 12, 1, tzinfo=UTC)
    imported(team, [Ran(month_end - timedelta(hours=1), month_end + timedelta(hours=2), user, devices["android"])])
    rows = get_usage(
        client, admin, team, **{"from": "2026-11-01T00:00:00Z", "to": "2027-01-01T00:00:00Z", "granularity": "month"}
    )
    assert [(row["start"], row["end"], row["deviceMinutes"], row["sessions"]) for row in rows] == [
        ("2026-11-01T00:00:00.000000Z", "2026-12-01T00:00:00.000000Z", 60.0, 1),
        ("2026-12-01T00:00:00.000000Z", "2027-01-01T00:00:00.000000Z", 120.0, 0),
    ]


def test_only_the_part_inside_the_range_counts_and_the_ends_are_cut(client, admin, team, devices):
    user = str(admin.user.id)
    imported(team, [Ran(T0 + timedelta(hours=1), T0 + timedelta(hours=5), user, devices["ios"])])
    rows = get_usage(
        client,
        admin,
        team,
        **{"from": "2026-11-30T02:30:00Z", "to": "2026-11-30T04:15:00+00:00", "granularity": "hour"},
    )
    assert [(row["start"], row["end"], row["deviceMinutes"], row["sessions"]) for row in rows] == [
        ("2026-11-30T02:30:00.000000Z", "2026-11-30T03:00:00.000000Z", 30.0, 0),
        ("2026-11-30T03:00:00.000000Z", "2026-11-30T04:00:00.000000Z", 60.0, 0),
        ("2026-11-30T04:00:00.000000Z", "2026-11-30T04:15:00.000000Z", 15.0, 0),
    ]


def test_a_session_longer_than_any_before_it_is_still_found(client, admin, team, devices):
    """The read goes back as far as the organization's longest session, whatever that is."""
    user = str(admin.user.id)
    imported(team, [Ran(T0 - timedelta(days=40), T0 + timedelta(hours=1), user, devices["ios"])])
    rows = get_usage(client, admin, team, **{"from": "2026-11-30T00:00:00Z", "to": "2026-11-30T02:00:00Z"})
    assert [(row["deviceMinutes"], row["peakConcurrency"]) for row in rows] == [(60.0, 1)]


def test_a_live_session_started_long_before_the_range_is_found(client, admin, team, devices):
    """Live sessions are read from their own index, however long ago they started."""
    started = utcnow() - timedelta(days=40)
    imported(team, [Ran(started, None, str(admin.user.id), devices["ios"])])  # expires in 30 days: passed
    day = started + timedelta(days=20)
    rows = get_usage(client, admin, team, **{"from": format_utc(day), "to": format_utc(day + timedelta(hours=1))})
    assert sum(row["deviceMinutes"] for row in rows) == pytest.approx(60, abs=0.011)  # 1 or 2 buckets
    assert {(row["sessions"], row["peakConcurrency"]) for row in rows} == {(0, 1)}


@pytest.mark.parametrize("how", ["released", "expired"])
def test_a_session_that_ends_after_a_long_life_is_still_found(client, admin, team, devices, how):
    """Ending a session raises how far back a report reads, in the transaction that ends it
    (by a release, or by the expiry sweep)."""
    started = utcnow() - timedelta(days=(10 if how == "released" else 35))
    imported(team, [Ran(started, None, str(admin.user.id), devices["ios"])])
    if how == "released":
        listed = client.get(SESSIONS, params={"status": "live"}, headers=admin.acting_on(team.id)).json()["data"]
        response = client.post(f"{SESSIONS}/{listed[0]['id']}/release", headers=admin.acting_on(team.id))
        assert response.status_code == 200
    else:
        leases.release_expired()  # what each server process's sweep calls (it may have run already)
        released = client.get(SESSIONS, params={"status": "released"}, headers=admin.acting_on(team.id)).json()
        assert len(released["data"]) == 1
    day = started + timedelta(days=5)
    rows = get_usage(client, admin, team, **{"from": format_utc(day), "to": format_utc(day + timedelta(days=1))})
    assert sum(row["deviceMinutes"] for row in rows) == pytest.approx(1440, abs=0.011)  # two days
    assert {row["peakConcurrency"] for row in rows} == {1}


def test_peak_concurrency_counts_what_ran_at_one_instant(client, admin, team, devices):
    user = str(admin.user.id)
    imported(
        team,
        [
            Ran(T0, T0 + 10 * MINUTE, user, devices["ios"]),
            Ran(T0 + 5 * MINUTE, T0 + 20 * MINUTE, user, devices["ipad"]),
            Ran(T0 + 10 * MINUTE, T0 + 30 * MINUTE, user, devices["android"]),  # starts as the first ends
        ],
    )
    (row,) = get_usage(client, admin, team, **{"from": "2026-11-30T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    assert (row["sessions"], row["deviceMinutes"], row["peakConcurrency"]) == (3, 45.0, 2)


def test_a_live_session_counts_up_to_now(client, admin, team, devices):
    started = client.post(SESSIONS, json={"platform": "ios"}, headers=admin.acting_on(team.id)).json()
    created = datetime.fromisoformat(started["createdAt"])
    before = utcnow()
    rows = get_usage(
        client, admin, team, **{"from": format_utc(created - MINUTE), "to": format_utc(created + timedelta(hours=2))}
    )
    after = utcnow()
    counted = sum(row["deviceMinutes"] for row in rows)  # two days' buckets when it runs near midnight
    assert minutes(before - created) <= counted <= minutes(after - created) + 0.01
    assert sum(row["sessions"] for row in rows) == 1 and max(row["peakConcurrency"] for row in rows) == 1


def test_without_group_every_bucket_has_a_row(client, admin, team, devices):
    rows = get_usage(
        client, admin, team, **{"from": "2026-11-30T00:00:00Z", "to": "2026-11-30T03:00:00Z", "granularity": "hour"}
    )
    assert [(row["start"][11:16], row["deviceMinutes"], row["sessions"], row["peakConcurrency"]) for row in rows] == [
        ("00:00", 0.0, 0, 0),
        ("01:00", 0.0, 0, 0),
        ("02:00", 0.0, 0, 0),
    ]


def test_sessions_of_other_organizations_never_count(client, admin, team, devices, world):
    other = world.organization("Other")
    outsider = world.member(of=[(other, Role.admin)])
    imported(other, [Ran(T0, T0 + timedelta(hours=1), str(outsider.user.id), devices["ios"])])
    (row,) = get_usage(client, admin, team, **{"from": "2026-11-30T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    assert (row["sessions"], row["deviceMinutes"]) == (0, 0.0)


# Random histories against a brute-force sum: every granularity and grouping.


def brute_force(runs: list[Ran], start: datetime, end: datetime, cuts: list[datetime], group_of, now: datetime):
    """Per (bucket start, group): sessions started, device microseconds, peak concurrency."""
    spans = []
    for run in runs:
        ended = run.released if run.released is not None else min(now, run.created + timedelta(days=30))
        s, e = max(run.created, start), min(ended, end)
        if e > s:
            spans.append((run, s, e))
    rows = {}
    for b_start, b_end in zip(cuts, cuts[1:], strict=False):
        groups = {group_of(run) for run, s, e in spans if s < b_end and e > b_start}
        for group in groups:
            mine = [(run, s, e) for run, s, e in spans if group_of(run) == group and s < b_end and e > b_start]
            used = sum((min(e, b_end) - max(s, b_start)) // timedelta(microseconds=1) for _, s, e in mine)
            started = sum(1 for run, _, _ in mine if b_start <= run.created < b_end)
            instants = [b_start] + [s for _, s, _ in mine if s >= b_start]
            peak = max(sum(1 for _, s, e in mine if s <= t < e) for t in instants)
            rows[(b_start, group)] = (started, used, peak)
    return rows


GROUPS = {
    None: lambda run: None,
    "platform": lambda run: run.device.platform,
    "deviceType": lambda run: run.device.type,
    "user": lambda run: run.user,
}


def _cuts(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    cuts, at = [start], start
    while at < end:
        if granularity == "hour":
            at = at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        elif granularity == "day":
            at = at.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        else:
            at = (at.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
        cuts.append(min(at, end))
    return cuts


@pytest.fixture
def random_history(world, team, admin, devices):
    rng = random.Random(23)
    users = [str(admin.user.id)] + [str(world.member(of=[(team, Role.readwrite)]).user.id) for _ in range(2)]
    runs, free_at = [], {name: T0 - timedelta(days=3) for name in devices}
    for _ in range(120):
        name = rng.choice(list(devices))  # one device holds one session at a time
        created = free_at[name] + timedelta(seconds=rng.randint(0, 4 * 3600), microseconds=rng.randint(0, 999_999))
        released = created + timedelta(seconds=rng.randint(1, 3 * 3600), microseconds=rng.randint(0, 999_999))
        runs.append(Ran(created, released, rng.choice(users), devices[name]))
        free_at[name] = released
    last = max(free_at, key=free_at.get)  # and one still live, on the device free the latest
    runs.append(Ran(free_at[last] + MINUTE, None, users[0], devices[last]))
    return imported(team, runs)


@pytest.mark.parametrize("group_by", list(GROUPS))
@pytest.mark.parametrize(
    ("granularity", "start", "end"),
    [
        ("hour", datetime(2026, 11, 28, 7, 20, tzinfo=UTC), datetime(2026, 11, 29, 16, 45, 30, tzinfo=UTC)),
        ("day", T0 - timedelta(days=4), T0 + timedelta(days=400)),
        ("month", datetime(2026, 11, 28, 12, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)),
    ],
)
def test_usage_matches_a_brute_force_sum(client, admin, team, random_history, granularity, start, end, group_by):
    params = {"from": format_utc(start), "to": format_utc(end), "granularity": granularity}
    if group_by:
        params["groupBy"] = group_by
    before = utcnow()
    rows = get_usage(client, admin, team, **params)
    cuts = _cuts(start, end, granularity)
    expected = brute_force(random_history, start, end, cuts, GROUPS[group_by], before)
    got = {(datetime.fromisoformat(row["start"]), row.get(group_by) if group_by else None): row for row in rows}
    live_group = GROUPS[group_by](random_history[-1])
    for key, (started, used, peak) in expected.items():
        row = got.pop(key)
        assert (row["sessions"], row["peakConcurrency"]) == (started, peak), key
        shown = float((Decimal(used) / 60_000_000).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        if key[1] == live_group and key[0] <= before < cuts[cuts.index(key[0]) + 1]:
            assert shown <= row["deviceMinutes"] <= shown + 0.05, key  # the live one ran on meanwhile
        else:
            assert row["deviceMinutes"] == shown, key
    # What is left: buckets where nothing ran (every bucket has a row without groupBy).
    assert all(row["deviceMinutes"] == 0 and row["sessions"] == 0 for row in got.values()) and (
        group_by is None or not got
    )
    assert [row["start"] for row in rows] == sorted(row["start"] for row in rows)
    if group_by is None:
        assert len(rows) == len(cuts) - 1


# CSV


def test_csv_holds_the_same_rows(client, admin, team, random_history):
    params = {"from": "2026-11-27T00:00:00Z", "to": "2026-12-01T00:00:00Z", "groupBy": "platform"}
    headers = admin.acting_on(team.id)
    as_json = client.get(usage_path(team.id), params=params, headers=headers).json()["data"]
    response = client.get(usage_path(team.id), params=params, headers={**headers, "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["vary"] == "Accept"
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == ["start", "end", "platform", "sessions", "deviceMinutes", "peakConcurrency", "artifactBytes"]
    assert response.text.endswith("\r\n")
    assert [
        {
            **row,
            "sessions": int(row["sessions"]),
            "deviceMinutes": float(row["deviceMinutes"]),
            "peakConcurrency": int(row["peakConcurrency"]),
            "artifactBytes": int(row["artifactBytes"]),
        }
        for row in (dict(zip(lines[0], line, strict=True)) for line in lines[1:])
    ] == as_json
    assert all(len(line[4].split(".")[1]) == 2 for line in lines[1:])  # two decimals, always


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/*", "text/csv"),
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("text/csv;q=0.2, application/json", "application/json"),
        ("image/png", "application/json"),
    ],
)
def test_the_accept_header_chooses_json_or_csv(client, admin, team, accept, media_type):
    headers = admin.acting_on(team.id) | ({"Accept": accept} if accept else {})
    params = {"from": "2026-11-30T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    response = client.get(usage_path(team.id), params=params, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type


# Refusals


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-12-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},  # empty
        {"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},  # backwards
        {"from": "2026-10-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "granularity": "hour"},  # 1,464 hours
        {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z", "granularity": "month"},
        {"from": "2026-12-01", "to": "2026-12-02T00:00:00Z"},  # not an instant
        {"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "granularity": "week"},
        {"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "groupBy": "device"},
        {"to": "2026-12-02T00:00:00Z"},
    ],
)
def test_a_bad_range_is_refused_with_the_envelope(client, admin, team, params):
    response = client.get(usage_path(team.id), params=params, headers=admin.acting_on(team.id) | {"Accept": "text/csv"})
    assert_error(response, 400, "invalid_request")


def test_a_thousand_buckets_are_allowed(client, admin, team):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = get_usage(
        client,
        admin,
        team,
        **{"from": format_utc(start), "to": format_utc(start + timedelta(hours=1000)), "granularity": "hour"},
    )
    assert len(rows) == 1000


@pytest.mark.parametrize("role", [Role.readwrite, Role.readonly])
def test_only_admins_read_usage(client, world, team, role):
    member = world.member(of=[(team, role)])
    params = {"from": "2026-11-30T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    assert_error(client.get(usage_path(team.id), params=params, headers=member.headers), 403, "forbidden")


def test_another_organizations_usage_is_not_found(client, world, admin):
    other = world.organization("Other")
    params = {"from": "2026-11-30T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    assert_error(client.get(usage_path(other.id), params=params, headers=admin.headers), 404, "not_found")


def test_a_grouped_report_of_more_than_ten_thousand_rows_is_refused(client, admin, team, world):
    """Eleven users, each on a device for the whole of a 1,000-hour range: 11,000 rows."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [
        Ran(
            start,
            start + timedelta(hours=1000),
            str(world.member(of=[(team, Role.readwrite)]).user.id),
            world.device(name=f"D{n}"),
        )
        for n in range(11)
    ]
    imported(team, runs)
    params = {"from": format_utc(start), "to": format_utc(start + timedelta(hours=1000)), "granularity": "hour"}
    assert len(get_usage(client, admin, team, **params, groupBy="platform")) == 1000
    response = client.get(usage_path(team.id), params={**params, "groupBy": "user"}, headers=admin.acting_on(team.id))
    assert "more than 10000 rows" in assert_error(response, 400, "invalid_request")["error"]["message"]


def test_artifact_bytes_count_in_the_bucket_they_became_available(client, world, admin, team, devices):
    """Artifacts count, per bucket and per group, the bytes that became available: a deleted one
    no longer, a pending one not yet."""
    from tests.support.artifacts import API, Payload, attach

    started = client.post(SESSIONS, json={"platform": "android"}, headers=admin.acting_on(team.id))
    session_id = started.json()["id"]
    kept, deleted = Payload(b"k" * 300), Payload(b"d" * 50)
    attach(client, admin.acting_on(team.id), session_id, kept)
    gone = attach(client, admin.acting_on(team.id), session_id, deleted)
    client.delete(f"{API}/sessions/{session_id}/artifacts/{gone['id']}", headers=admin.acting_on(team.id))
    pending = {**Payload(b"p" * 7).declared()}
    client.post(f"{API}/sessions/{session_id}/artifacts", json=pending, headers=admin.acting_on(team.id))
    now = utcnow()
    query = {"from": format_utc(now - timedelta(days=1)), "to": format_utc(now + timedelta(days=1))}
    by_day = get_usage(client, admin, team, **query)
    assert sum(row["artifactBytes"] for row in by_day) == 300
    by_platform = get_usage(client, admin, team, **query, groupBy="platform")
    assert {row["platform"]: row["artifactBytes"] for row in by_platform if row["artifactBytes"]} == {"android": 300}
    by_user = get_usage(client, admin, team, **query, groupBy="user")
    assert [row["user"] for row in by_user if row["artifactBytes"] == 300] == [str(admin.user.id)]
