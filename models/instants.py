"""Instants unique within a scope: the exact paging cursor of every list.

A list is exact when the instant it pages by is unique within what it shows (a session's
`created_at` within its organization, an audit event's within its organization, an API key's
across all keys). New rows get the first free microsecond at or after the instant they ask
for; without one they get max(now, newest + 1 µs), so they are never older than a row a
reader has already paged past. Writers of one scope take turns (`take_turns`) so that they
allocate without racing; a unique index in the database stays the guarantee.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, bindparam, func, select, text, true
from sqlalchemy.orm import Mapped

from sessions_api.core.prepared import Prepared
from sessions_api.core.timestamps import MICROSECOND, utcnow
from sessions_api.models.types import UTCDateTime

T = TypeVar("T")


class InstantAllocator:
    """Hands out instants of `column` unique among the rows `scope` selects: each wanted
    instant gets the first free microsecond at or after it; no wanted instant (None) means
    max(now, newest + 1 µs).

    Taken instants are read by range, once per batch in the common case; runs of taken
    instants are skipped with path compression, so a batch of n equal instants costs O(n).
    """

    def __init__(
        self,
        conn: Connection,
        column: Mapped[datetime] | ColumnElement[datetime],
        scope_column: Mapped[Any] | ColumnElement[Any] | None = None,
        scope: Any = None,
    ) -> None:
        """The rows of the scope are those whose `scope_column` is `scope` (all rows without one)."""
        self._conn = conn
        self._reads = _reads(column, scope_column)
        self._scope = {"scope": scope}
        self._taken: set[datetime] = set()
        self._skip: dict[datetime, datetime] = {}
        self._loaded: tuple[datetime, datetime] | None = None  # the range read so far
        self._newest: datetime | None = None

    def allocate(self, wanted: list[datetime | None]) -> list[datetime]:
        explicit = [instant for instant in wanted if instant is not None]
        if explicit:
            self._load(min(explicit), max(explicit) + len(wanted) * MICROSECOND)
        allocated = []
        for instant in wanted:
            if instant is None:
                # After the newest instant of the scope (and of this batch): free without a read.
                instant = max(utcnow(), self._after_newest())
            else:
                instant = self._first_free(instant)
            self._taken.add(instant)
            if self._newest is not None and instant > self._newest:
                self._newest = instant
            allocated.append(instant)
        return allocated

    def next(self) -> datetime:
        """One instant after every taken one: max(now, newest + 1 µs)."""
        (instant,) = self.allocate([None])
        return instant

    def _first_free(self, instant: datetime) -> datetime:
        while True:
            if self._loaded is None or not self._loaded[0] <= instant <= self._loaded[1]:
                self._load(instant, instant + 4096 * MICROSECOND)
            _, loaded_until = self._loaded_range()
            path = []
            while instant in self._taken and instant <= loaded_until:
                path.append(instant)
                instant = self._skip.get(instant, instant + MICROSECOND)
            for step in path:
                self._skip[step] = instant
            if instant <= loaded_until:
                return instant

    def _loaded_range(self) -> tuple[datetime, datetime]:
        assert self._loaded is not None, "read a range first"
        return self._loaded

    def _load(self, low: datetime, high: datetime) -> None:
        """Read the taken instants in [low, high], extending the loaded range to cover it."""
        if self._loaded is not None:
            if self._loaded[0] <= low and high <= self._loaded[1]:
                return
            if low <= self._loaded[1] + MICROSECOND and high >= self._loaded[0]:
                low, high = min(low, self._loaded[0]), max(high, self._loaded[1])
            # Otherwise the old range is left behind; what it holds stays taken (in this batch too).
        taken = self._reads.taken.rows(self._conn, {**self._scope, "low": low, "high": high})
        self._taken.update(row[0] for row in taken)
        self._loaded = (low, high)

    def _after_newest(self) -> datetime:
        if self._newest is None:
            newest = self._reads.newest.scalar(self._conn, self._scope)
            known = max(self._taken, default=None)
            self._newest = max(filter(None, (newest, known)), default=utcnow() - MICROSECOND)
        return self._newest + MICROSECOND


@dataclass(frozen=True)
class _Reads:
    newest: Prepared
    taken: Prepared


_READS: dict[tuple[str, str], _Reads] = {}


def _reads(
    column: Mapped[datetime] | ColumnElement[datetime], scope_column: Mapped[Any] | ColumnElement[Any] | None
) -> _Reads:
    """An allocator's two reads of `column` within a scope, prepared once (core.prepared)."""
    key = (str(column), str(scope_column))
    reads = _READS.get(key)
    if reads is None:
        scope = true() if scope_column is None else scope_column == bindparam("scope")
        low, high = bindparam("low", type_=UTCDateTime()), bindparam("high", type_=UTCDateTime())
        reads = _READS[key] = _Reads(
            Prepared(select(func.max(column)).where(scope)),
            Prepared(select(column).where(scope, column >= low, column <= high)),
        )
    return reads


def in_organization_turns(
    *,
    conn: Connection,
    column: Mapped[datetime] | ColumnElement[datetime],
    organization_column: Mapped[uuid.UUID] | ColumnElement[uuid.UUID],
    items: Sequence[T],
    organization_of: Callable[[T], uuid.UUID],
) -> list[tuple[T, datetime]]:
    """Take the audit turn of every organization of `items` (in one order) and give each item
    the next instant of `column` unique within its organization: what the audit log and the
    event log write under, so that both follow each organization's commit order."""
    by_organization: dict[uuid.UUID, list[T]] = {}
    for item in items:
        by_organization.setdefault(organization_of(item), []).append(item)
    take_turns(conn=conn, scopes=(f"audit:{organization_id}" for organization_id in by_organization))
    placed: list[tuple[T, datetime]] = []
    for organization_id, organization_items in by_organization.items():
        allocator = InstantAllocator(conn, column, organization_column, organization_id)
        instants = allocator.allocate([None] * len(organization_items))
        placed += zip(organization_items, instants, strict=True)
    return placed


def take_turns(*, conn: Connection, scopes: Iterable[str]) -> None:
    """On PostgreSQL, writers that allocate instants in one scope (`"sessions:<organization
    id>"`, say) take turns until they commit, so that they allocate without a race (SQLite's
    BEGIN IMMEDIATE already serializes writers). The unique index stays the guarantee; this
    only spares retries.

    The scopes of one call are locked in one order, so two writers that take several turns at
    once never wait for each other.
    """
    if conn.dialect.name != "postgresql":
        return
    for scope in sorted(set(scopes)):
        _TURN.execute(conn, {"key": scope})


_TURN = Prepared(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"))
