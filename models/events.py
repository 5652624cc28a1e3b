"""The event log: every event of an organization once, in its commit order (listEvents).

Written in the transaction of the change that caused it, beside the audit log and under the
same per-organization turn (`models.instants.take_turns` on `audit:<organization>`): writers
of one organization take turns until they commit, and each event's instant is the first free
one after the newest committed, so within an organization the instants follow commit order.
A reader that saw an event therefore never finds a later-committed one before it: resuming
after an event's instant misses nothing and repeats nothing. (The alternative, reading only up
to PostgreSQL's oldest running transaction, `pg_snapshot_xmin`, would hold every reader back
by every tenant's slowest writer; the turn costs only writers of the same organization, who
already take it for the audit log.) On SQLite writers are serialized by the database.

An event's id is its instant's digits (`evt_` and `YYYYMMDDhhmmssffffff`): unique within its
organization, ordered as the log is. What is written: the session events with the Session,
the session request or the artifact that webhooks send as `data` (`models.webhooks`), and the
audit log's `member.*`, `key.*`, `webhook_endpoint.*` and `artifact.created|deleted` with
their target and changes (`models.audit`). Members read `session.*` and `artifact.*`; only
admins the others. Events are kept `SESSIONS_API_EVENT_RETENTION_DAYS`, swept oldest first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Row, Select, delete, func, or_, select
from sqlmodel import col

from sessions_api.core import db, notifications, settings
from sessions_api.core.prepared import insert_rows
from sessions_api.core.timestamps import utcnow
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import Gone, InvalidInput
from sessions_api.models.instants import in_organization_turns
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import EventRecord

# The categories of events only an organization's admins read (as with the audit log).
ADMIN_CATEGORIES = frozenset({"member", "key", "webhook_endpoint"})
# The LISTEN/NOTIFY channel that says an organization has new events (PostgreSQL).
CHANNEL = "sessions_api_events"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Events the retention sweep deletes in one transaction.
_SWEEP_BATCH = 5000


@dataclass(frozen=True)
class NewEvent:
    organization_id: uuid.UUID
    type: str
    data: Mapping[str, Any]
    session_id: uuid.UUID | None = None
    # When it happened, where that is not when it is written (a session's start or end).
    occurred: datetime | None = None
    # Its row's id: the `webhook-id` of its deliveries, which reference it.
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def append(*, conn: Connection, events: Sequence[NewEvent]) -> None:
    """Write `events` into their organizations' logs, in the transaction of `conn`, under each
    organization's turn (taken in one order: see the module's docstring)."""
    if not events:
        return
    placed = in_organization_turns(
        conn=conn,
        column=col(EventRecord.created_at),
        organization_column=col(EventRecord.organization_id),
        items=events,
        organization_of=lambda event: event.organization_id,
    )
    insert_rows(conn, EventRecord, [_row(event, instant) for event, instant in placed])
    # Wakes every process's streams of these organizations once the transaction commits.
    organizations = sorted({str(event.organization_id) for event in events})
    notifications.notify(conn=conn, channel=CHANNEL, payloads=organizations)


def _row(event: NewEvent, created_at: datetime) -> dict[str, Any]:
    category = event.type.split(".", 1)[0]
    return {
        "id": event.id,
        "organization_id": event.organization_id,
        "created_at": created_at,
        "occurred": event.occurred or created_at,
        "type": event.type,
        "category": category,
        "admins_only": category in ADMIN_CATEGORIES,
        "session_id": event.session_id,
        "data": json.dumps(event.data, separators=(",", ":")),
    }


_COLUMNS: tuple[Any, ...] = (
    uuid_text(col(EventRecord.organization_id)).label("organization"),
    rfc3339_text(col(EventRecord.created_at)).label("created_at"),
    col(EventRecord.type),
    col(EventRecord.data),
)
_VIEW: Select[Any] = select(*_COLUMNS)


def list_page(
    organization_id: uuid.UUID,
    limit: int,
    before: datetime | None,
    *,
    admin: bool,
    types: Sequence[str] = (),
    session_id: uuid.UUID | None = None,
) -> Page:
    """Up to `limit` of the organization's events strictly before `before`, newest first, of
    the given types (each exact, or a category as `session.*`), about one session if given;
    only what the caller's role reads."""
    where = _filters(organization_id, admin, types, session_id)
    return read_page(_VIEW, col(EventRecord.created_at), limit, before, *where)


def after(
    organization_id: uuid.UUID,
    position: datetime,
    limit: int,
    *,
    admin: bool,
    types: Sequence[str] = (),
    session_id: uuid.UUID | None = None,
) -> Sequence[Row[Any]]:
    """Up to `limit` of the organization's events strictly after `position`, oldest first
    (what a stream sends next), with the filters of `list_page`."""
    where = _filters(organization_id, admin, types, session_id)
    query = _VIEW.where(*where, col(EventRecord.created_at) > position).order_by(col(EventRecord.created_at))
    with db.reading() as conn:
        return conn.execute(query.limit(limit)).all()


def newest(organization_id: uuid.UUID) -> datetime:
    """The instant of the organization's newest event (the start of a stream that starts now)."""
    with db.reading() as conn:
        found = conn.execute(
            select(func.max(col(EventRecord.created_at))).where(col(EventRecord.organization_id) == organization_id)
        ).scalar()
    return found if found is not None else EPOCH


def newest_of(organization_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """The newest event's instant of each of these organizations (one read for a process's streams)."""
    with db.reading() as conn:
        rows = conn.execute(
            select(col(EventRecord.organization_id), func.max(col(EventRecord.created_at)))
            .where(col(EventRecord.organization_id).in_(organization_ids))
            .group_by(col(EventRecord.organization_id))
        ).all()
    return {organization_id: instant for organization_id, instant in rows}


def position_of(event_id: str) -> datetime:
    """The instant an event id names (`evt_` and 20 digits); InvalidInput otherwise."""
    digits = event_id.removeprefix("evt_")
    if not event_id.startswith("evt_") or len(digits) != 20 or not digits.isdigit():
        raise InvalidInput("Last-Event-ID must be the id of an event (evt_ and 20 digits).")
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("Last-Event-ID names no instant.") from None


def refuse_expired(position: datetime) -> None:
    """Gone (410 `events_expired`) when events after `position` may have been swept: a client
    resuming there would miss them, and must read the state again instead."""
    cutoff = utcnow() - timedelta(days=settings.current().event_retention_days)
    if position < cutoff:
        raise Gone(
            "events_expired",
            "The events after this Last-Event-ID are older than the log keeps "
            f"({settings.current().event_retention_days:g} days): read the current state, then follow from now.",
        )


def _filters(
    organization_id: uuid.UUID, admin: bool, types: Sequence[str], session_id: uuid.UUID | None
) -> list[ColumnElement[bool]]:
    where = [col(EventRecord.organization_id) == organization_id]
    if not admin:
        where.append(col(EventRecord.admins_only).is_(False))
    if types:
        where.append(or_(*(_of_type(wanted) for wanted in dict.fromkeys(types))))
    if session_id is not None:
        where.append(col(EventRecord.session_id) == session_id)
    return where


def _of_type(wanted: str) -> ColumnElement[bool]:
    if wanted.endswith(".*"):
        return col(EventRecord.category) == wanted.removesuffix(".*")
    return col(EventRecord.type) == wanted


def event_document(row: Row[Any]) -> dict[str, Any]:
    """An event as the API answers it; its `data` is sent as stored, never parsed."""
    return {
        "id": event_id(row.created_at),
        "type": row.type,
        "organization": row.organization,
        "createdAt": row.created_at,
        "data": orjson.Fragment(row.data),
    }


def event_id(created_at: str) -> str:
    """`evt_` and the digits of the instant (`2026-12-07T18:25:14.123456Z` is
    `evt_20261207182514123456`): ordered as the log is."""
    return "evt_" + "".join(character for character in created_at if character.isdigit())


def sweep_expired(now: datetime | None = None) -> int:
    """Delete the events older than the retention, oldest first, in one bounded batch; how many."""
    cutoff = (now or utcnow()) - timedelta(days=settings.current().event_retention_days)
    with db.writing() as conn:
        oldest = (
            select(col(EventRecord.id))
            .where(col(EventRecord.created_at) < cutoff)
            .order_by(col(EventRecord.created_at))
            .limit(_SWEEP_BATCH)
        )
        return int(conn.execute(delete(EventRecord).where(col(EventRecord.id).in_(oldest))).rowcount)
