"""The reads every request makes run compiled on the driver (core.compiled_reads): they must
answer exactly what the same statement answers through SQLAlchemy, value for value and type
for type, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, exists, func, select
from sqlmodel import col

from sessions_api.core import compiled_reads, db
from sessions_api.core.compiled_reads import CompiledRead
from sessions_api.models import Role, api_keys, sessions
from sessions_api.models.sessions import SessionFilters
from sessions_api.models.tables import ApiKey, SessionRecord, User

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _through_sqlalchemy(statement: Select[Any], values: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple]]:
    with db.reading() as conn:
        return [(tuple(row._fields), tuple(row)) for row in conn.execute(statement, values).all()]


def _compiled(statement: Select[Any], values: dict[str, Any], serving: bool) -> list[tuple[tuple[str, ...], tuple]]:
    """The statement compiled, on a loop with the pool an app's lifespan opens (`serving`), or
    on one without (through the engine, on PostgreSQL)."""

    async def read() -> list[Any]:
        if serving:
            await compiled_reads.open_pool(db.current())
        try:
            return await CompiledRead(statement).all(values)
        finally:
            await compiled_reads.close_pool(db.current())

    return [(tuple(row._fields), tuple(row)) for row in asyncio.run(read())]


def _same_answers(statement: Select[Any], values: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple]]:
    expected = _through_sqlalchemy(statement, values)
    for serving in (True, False):
        answered = _compiled(statement, values, serving)
        assert answered == expected
        assert [[type(value) for value in row] for _, row in answered] == [
            [type(value) for value in row] for _, row in expected
        ]
    return answered


def test_pages_of_sessions_with_every_filter(world):
    alice = world.member()
    other = world.device(name="Galaxy S25", platform="android")
    later = T0 + timedelta(hours=1)
    created = [T0 + timedelta(minutes=i) for i in range(5)]
    world.sessions(alice.personal, alice.user, created, [later, None, None, later, None])
    page_filters = [
        (None, SessionFilters()),
        (T0 + timedelta(minutes=3), SessionFilters(status="live")),
        (None, SessionFilters(status="released", platform="android", user_id=alice.user.id)),
        (None, SessionFilters(device_id=other.id)),
    ]
    for before, filters in page_filters:
        statement, values = sessions.page_statement(alice.personal.id, 10, before, filters)
        rows = _same_answers(statement, values)
        assert all(fields == sessions.SESSION_VIEW_COLUMNS for fields, _ in rows)
    statement, values = sessions.page_statement(alice.personal.id, 10, None)
    assert len(_same_answers(statement, values)) == 5


def test_keys_with_their_instants_uuids_flags_and_nulls(world):
    alice = world.member()
    team = world.organization()
    bound = world.member(of=[(team, Role.readonly)], bound_to=team)
    api_keys.revoke_key(bound.key_id)
    has_sessions = exists().where(col(SessionRecord.user_id) == col(ApiKey.user_id))
    lookup = (
        select(
            col(ApiKey.id),
            col(ApiKey.organization_id),
            func.coalesce(col(ApiKey.organization_id), col(User.default_organization_id)).label("selected"),
            col(ApiKey.created_at),
            col(ApiKey.revoked_at),
            col(ApiKey.expires_at),
            has_sessions.label("has_sessions"),
        )
        .join(User, col(User.id) == col(ApiKey.user_id))
        .where(col(ApiKey.user_id) == bindparam("user"))
    )
    (unbound,) = _same_answers(lookup, {"user": alice.user.id})
    assert unbound[1][0] == alice.key_id and unbound[1][1] is None and unbound[1][2] == alice.personal.id
    (revoked,) = _same_answers(lookup, {"user": bound.user.id})
    assert revoked[1][1] == team.id and isinstance(revoked[1][4], datetime) and revoked[1][6] is False
    counted = (
        select(func.count().label("sessions"))
        .select_from(SessionRecord)
        .where(col(SessionRecord.created_at) < bindparam("t"))
    )
    _same_answers(counted, {"t": T0})
