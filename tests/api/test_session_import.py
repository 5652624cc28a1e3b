"""The bulk import path and the unique-instant rule behind exact paging."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from sessions_api.core import db
from sessions_api.core.timestamps import format_utc
from sessions_api.models import session_import
from sessions_api.models.errors import InvalidInput
from sessions_api.models.sessions import NewSession
from sessions_api.models.tables import SessionRecord
from tests.support.world import create_session

T0 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture
def alice(world):
    return world.member()


def _line(member, device, **extra) -> str:
    """A released session, unless `extra` says otherwise (None drops a field)."""
    record = {
        "organization": str(member.personal.id),
        "user": str(member.user.id),
        "device": str(device.id),
        "createdAt": format_utc(T0),
        "releasedAt": format_utc(T0 + timedelta(minutes=5)),
    }
    record.update(extra)
    return json.dumps({key: value for key, value in record.items() if value is not None})


def _count() -> int:
    with db.reading() as conn:
        return conn.execute(select(func.count()).select_from(SessionRecord)).scalar_one()


def _instants() -> list[datetime]:
    with db.reading() as conn:
        return sorted(conn.execute(select(SessionRecord.created_at)).scalars())


def test_colliding_instants_move_past_existing_runs(world, alice):
    world.sessions(alice.personal, alice.user, [T0 + timedelta(microseconds=us) for us in range(6000)])
    world.sessions(alice.personal, alice.user, [T0, T0 + timedelta(microseconds=10)])
    instants = _instants()
    assert len(set(instants)) == len(instants) == 6002
    assert instants[-2:] == [T0 + timedelta(microseconds=6000), T0 + timedelta(microseconds=6001)]


def test_a_session_without_an_instant_is_newer_than_every_other(world, alice):
    future = datetime.now(UTC) + timedelta(hours=3)
    world.sessions(alice.personal, alice.user, [future, future])
    row = create_session(NewSession(alice.personal.id, alice.user.id, world.device().id))
    assert row.created_at == format_utc(future + timedelta(microseconds=2))  # as the API shows it


def test_released_before_created_is_kept_in_order_after_a_move(world, alice):
    world.sessions(alice.personal, alice.user, [T0])
    world.sessions(alice.personal, alice.user, [T0], released=[T0])
    with db.reading() as conn:
        rows = conn.execute(
            select(SessionRecord.created_at, SessionRecord.released_at).where(SessionRecord.created_at > T0)
        ).all()
    assert rows == [(T0 + timedelta(microseconds=1), T0 + timedelta(microseconds=1))]


def test_import_keeps_ids_and_timestamps(world, alice):
    session_id = uuid.uuid4()
    line = _line(
        alice,
        world.device(),
        id=str(session_id),
        createdAt="2026-02-03T05:05:06.25+01:00",
        releasedAt="2026-02-03T04:15:00Z",
        expiresAt="2026-02-03T06:00:00+01:00",
    )
    assert session_import.import_sessions([line]) == 1
    with db.reading() as conn:
        row = conn.execute(select(SessionRecord)).one()
    assert row.id == session_id
    assert row.created_at == T0 + timedelta(microseconds=250000)
    assert row.released_at == datetime(2026, 2, 3, 4, 15, tzinfo=UTC)
    assert row.expires_at == datetime(2026, 2, 3, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not json", "line 3: not valid JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ('{"organization": "x"}', "line 3: 'user' is required"),
        ("ORG=nope", "line 3: 'organization' must be a UUID"),
        ("ORG=" + str(uuid.UUID(int=7)), "line 3: no organization with id"),
        ("USER=" + str(uuid.UUID(int=8)), "line 3: no user with id"),
        ("DEVICE=" + str(uuid.UUID(int=9)), "line 3: no device with id"),
        ("createdAt=2026-02-03T04:05:06", "line 3: 'createdAt' is not an RFC 3339 timestamp"),
        ("releasedAt=2026-02-03T03:05:06Z", "line 3: 'releasedAt' is before 'createdAt'"),
        ("expiresAt=2026-02-03T03:05:06Z", "line 3: 'expiresAt' needs a 'createdAt' before it"),
        ("colour=blue", "line 3: unknown field(s) colour"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_imported(world, alice, bad, message):
    device = world.device()
    good = _line(alice, device)
    if bad.startswith(("ORG=", "USER=", "DEVICE=")):
        field, value = bad.split("=", 1)
        record = json.loads(good)
        record[{"ORG": "organization", "USER": "user", "DEVICE": "device"}[field]] = value
        bad = json.dumps(record)
    elif "=" in bad and not bad.startswith("{"):
        field, value = bad.split("=", 1)
        record = json.loads(_line(alice, device, releasedAt=None))
        record[field] = value
        bad = json.dumps(record)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        session_import.import_sessions([good, good, bad, good])
    assert _count() == 0


def test_a_user_must_be_a_member_of_the_organization(world, alice):
    bob = world.member()
    line = _line(alice, world.device()).replace(str(alice.personal.id), str(bob.personal.id))
    with pytest.raises(InvalidInput, match="line 1: user .* is not a member"):
        session_import.import_sessions([line])


def test_duplicate_ids_are_refused(world, alice):
    session_id = str(uuid.uuid4())
    line = _line(alice, world.device(), id=session_id)
    with pytest.raises(InvalidInput, match="line 2: the id .* appears twice"):
        session_import.import_sessions([line, line])
    session_import.import_sessions([line])
    with pytest.raises(InvalidInput, match="line 1: a session with id .* already exists"):
        session_import.import_sessions([line])
    assert _count() == 1


def test_a_failure_in_a_later_chunk_rolls_back_earlier_chunks(world, alice):
    device = world.device()
    lines = [_line(alice, device)] * 12000 + ["{broken"]
    with pytest.raises(InvalidInput, match="line 12001"):
        session_import.import_sessions(lines)
    assert _count() == 0


def test_a_device_takes_one_live_session_at_most(world, alice):
    device = world.device()
    live = _line(alice, device, releasedAt=None)
    with pytest.raises(InvalidInput, match="line 3: device .* already has a live session"):
        session_import.import_sessions([live, _line(alice, device), live])
    session_import.import_sessions([live])
    with pytest.raises(InvalidInput, match="line 1: device .* already has a live session"):
        session_import.import_sessions([live])
    assert _count() == 1


def test_the_expiry_defaults_to_the_default_duration(world, alice):
    session_import.import_sessions([_line(alice, world.device(), releasedAt=None)])
    with db.reading() as conn:
        row = conn.execute(select(SessionRecord)).one()
    assert row.expires_at == T0 + timedelta(minutes=60)
