"""Cursor paging, shared by every list: newest first, strictly before a unique instant.

Each listed table has an instant unique within what one list shows (a session's `created_at`
within its organization, a device's `created_at` in the fleet). A page asks for `limit + 1`
rows strictly before the cursor: the extra row only says whether more exist, and the last
row's instant is the next cursor. No OFFSET: a deep page costs what the first one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select
from sqlalchemy.orm import Mapped

from sessions_api.core import db
from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.models.errors import InvalidInput


@dataclass(frozen=True)
class Page:
    rows: Sequence[Row[Any]]  # each with the cursor text `created_at`
    has_more: bool


def page_of(rows: Sequence[Row[Any]], limit: int) -> Page:
    """The page from the `limit + 1` rows a page query read."""
    return Page(rows=rows[:limit], has_more=len(rows) > limit)


def read_page(
    view: Select[Any],
    instant: Mapped[datetime] | ColumnElement[datetime],
    limit: int,
    before: datetime | None,
    *where: ColumnElement[bool],
    conn: Connection | None = None,
) -> Page:
    """Up to `limit` rows of `view` that meet `where`, whose `instant` (unique among them) is
    strictly before `before`, newest first; read on `conn` if given (a transaction that reads
    more beside the page), else in a transaction of its own."""
    if before is not None:
        where = (*where, instant < before)
    query = view.where(*where).order_by(instant.desc()).limit(limit + 1)
    if conn is not None:
        return page_of(conn.execute(query).all(), limit)
    with db.reading() as reading:
        return page_of(reading.execute(query).all(), limit)


def cursor(before: str | None) -> datetime | None:
    """The instant of a `before` cursor: any RFC 3339 timestamp with an offset, exact in UTC."""
    # Stored instants are whole microseconds: rounding a finer bound up keeps "strictly before" exact.
    return instant(before, "Query parameter 'before'", round_up=True)


def instant(text: str | None, what: str, *, round_up: bool = False) -> datetime | None:
    """An instant a request gives (`what` names where): any RFC 3339 timestamp with an offset,
    exact in UTC, instants beyond Python's range clamped to its ends; InvalidInput otherwise."""
    if text is None:
        return None
    try:
        return parse_rfc3339(text, round_up=round_up, clamp=True)
    except ValueError as exc:
        raise InvalidInput(f"{what} must be an RFC 3339 timestamp with an offset: {exc}.") from None
