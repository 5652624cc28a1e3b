"""RFC 3339 parsing and formatting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sessions_api.core.timestamps import format_utc, parse_rfc3339

UTC = UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T09:14:03Z", datetime(2026, 11, 28, 9, 14, 3, tzinfo=UTC)),
        ("2026-11-28T09:14:03.1Z", datetime(2026, 11, 28, 9, 14, 3, 100000, tzinfo=UTC)),
        ("2026-11-28T09:14:03.123456789Z", datetime(2026, 11, 28, 9, 14, 3, 123456, tzinfo=UTC)),
        ("2026-11-28T10:14:03.5+01:00", datetime(2026, 11, 28, 9, 14, 3, 500000, tzinfo=UTC)),
        ("2026-11-28T00:14:03-09:00", datetime(2026, 11, 28, 9, 14, 3, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),  # a leap second
    ],
)
def test_parse(text, expected):
    assert parse_rfc3339(text) == expected


def test_round_up_keeps_strictly_before_exact():
    assert parse_rfc3339("2026-11-28T09:14:03.1234561Z", round_up=True).microsecond == 123457
    assert parse_rfc3339("2026-11-28T09:14:03.1234560Z", round_up=True).microsecond == 123456


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T09:14:03",
        "2026-11-28",
        "2026-11-28T09:14Z",
        "2026-02-29T00:00:00Z",
        "2026-11-28T09:14:03+2400",
        "2026-11-28T09:14:03+24:00",
        "  2026-11-28T09:14:03Z",
        "",
    ],
)
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_out_of_range_instants_clamp_only_when_asked():
    with pytest.raises(ValueError):
        parse_rfc3339("0001-01-01T00:00:00+00:01")
    assert parse_rfc3339("0001-01-01T00:00:00+00:01", clamp=True) == datetime.min.replace(tzinfo=UTC)
    assert parse_rfc3339("9999-12-31T23:59:59-00:01", clamp=True) == datetime.max.replace(tzinfo=UTC)


def test_format_is_utc_z_and_six_digits():
    assert format_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    assert format_utc(datetime(999, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == "0999-01-02T03:04:05.000007Z"
    assert parse_rfc3339(format_utc(datetime(2026, 7, 1, 12, 0, 0, 42, tzinfo=UTC))).microsecond == 42


def test_the_api_writes_ids_and_instants_in_one_form_on_every_database(client, world):
    """Ids and instants are read as text (models.as_text): the same form on SQLite and PostgreSQL."""
    alice = world.member()
    whole_second = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    last_microsecond = datetime(2026, 3, 1, 12, 0, 0, 999999, tzinfo=UTC)
    world.sessions(alice.personal, alice.user, [whole_second, last_microsecond], released=[None, last_microsecond])

    page = client.get("/api/v1/sessions", params={"limit": 1}, headers=alice.headers).json()
    newest = page["data"][0]
    assert (newest["createdAt"], newest["releasedAt"]) == ("2026-03-01T12:00:00.999999Z",) * 2
    assert page["nextCursor"] == "2026-03-01T12:00:00.999999Z"
    oldest = client.get("/api/v1/sessions", params={"before": page["nextCursor"]}, headers=alice.headers).json()
    assert [s["createdAt"] for s in oldest["data"]] == ["2026-03-01T12:00:00.000000Z"]
    assert oldest["data"][0]["releasedAt"] is None
    assert oldest["data"][0]["expiresAt"] == "2026-03-01T13:00:00.000000Z"  # the default hour

    got = client.get(f"/api/v1/sessions/{newest['id']}", headers=alice.headers).json()
    assert got == newest
    for value in (got["id"], got["organization"], got["user"], got["device"]["id"]):
        assert value == str(uuid.UUID(value))  # canonical: lowercase, hyphenated
    assert got["organization"] == str(alice.personal.id) and got["user"] == str(alice.user.id)
