"""Sessions: the page query, lookup by id, and creation with a unique `created_at`.

Paging is exact because `created_at` is unique within an organization (a unique index,
which is also the index the page query walks). A new session gets the first free
microsecond at or after the instant it asks for; without one it gets
max(now, newest + 1 µs), so it is never older than a session already listed.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    exists,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, aliased
from sqlalchemy.sql.util import ClauseAdapter
from sqlmodel import col

from sessions_api.core import settings
from sessions_api.core.compiled_reads import CompiledRead
from sessions_api.core.prepared import Prepared, insert_rows
from sessions_api.models import usage
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import NotFound
from sessions_api.models.instants import InstantAllocator, take_turns
from sessions_api.models.paging import Page, page_of
from sessions_api.models.tables import Device, SessionRecord, SessionRequest, SessionTag

# What the API answers with: a session and its device in one row, its ids and instants
# already rendered as the API's text (see models.as_text). The names are the row's keys, in
# the order of its columns, for session_document(), which shapes rows by position.
_SESSION_VIEW_COLUMNS: dict[str, ColumnElement[Any] | Mapped[Any]] = {
    "id": uuid_text(col(SessionRecord.id)),
    "organization_id": uuid_text(col(SessionRecord.organization_id)),
    "user_id": uuid_text(col(SessionRecord.user_id)),
    "device_id": uuid_text(col(SessionRecord.device_id)),
    "platform": col(Device.platform),
    "type": col(Device.type),
    "name": col(Device.name),
    "os_version": col(Device.os_version),
    "created_at": rfc3339_text(col(SessionRecord.created_at)),
    "released_at": rfc3339_text(col(SessionRecord.released_at)),
    "expires_at": rfc3339_text(col(SessionRecord.expires_at)),
    "session_name": col(SessionRecord.name),
    "build": col(SessionRecord.build),
    "tags": col(SessionRecord.tags),
    "metadata_json": col(SessionRecord.metadata_json),
    "result": col(SessionRecord.result),
    "result_reason": col(SessionRecord.result_reason),
    "artifact_count": col(SessionRecord.artifact_count),
    # When it was queued, if it waited: its history's first state.
    "queued_at": rfc3339_text(
        select(col(SessionRequest.created_at))
        .where(col(SessionRequest.session_id) == col(SessionRecord.id))
        .limit(1)
        .scalar_subquery()
    ),
}
SESSION_VIEW_COLUMNS = tuple(_SESSION_VIEW_COLUMNS)
_SESSION_VIEW = select(*(column.label(name) for name, column in _SESSION_VIEW_COLUMNS.items())).join(
    Device, col(Device.id) == col(SessionRecord.device_id)
)

_ONE_SESSION = _SESSION_VIEW.where(
    col(SessionRecord.id) == bindparam("session_id"), col(SessionRecord.organization_id) == bindparam("organization_id")
)


# Positions of the session view's columns, by name (the view defines names and order once).
_AT = {name: index for index, name in enumerate(SESSION_VIEW_COLUMNS)}
(
    _ID,
    _ORGANIZATION,
    _USER,
    _DEVICE,
    _PLATFORM,
    _TYPE,
    _NAME,
    _OS_VERSION,
    _CREATED,
    _RELEASED,
    _EXPIRES,
    _SESSION_NAME,
    _BUILD,
    _TAGS,
    _METADATA,
    _RESULT,
    _RESULT_REASON,
    _ARTIFACT_COUNT,
    _QUEUED_AT,
) = (_AT[name] for name in SESSION_VIEW_COLUMNS)


def session_document(row: Row[Any]) -> dict[str, Any]:
    """A row of the session view as the API answers a session (getSession, and the `data` of
    webhook events): its ids and instants are already the API's text."""
    # Indexing by position costs a fraction of looking up eleven names on a Row.
    return {
        "id": row[_ID],
        "organization": row[_ORGANIZATION],
        "user": row[_USER],
        "device": {
            "id": row[_DEVICE],
            "platform": row[_PLATFORM],
            "type": row[_TYPE],
            "name": row[_NAME],
            "osVersion": row[_OS_VERSION],
        },
        "createdAt": row[_CREATED],
        "releasedAt": row[_RELEASED],
        "expiresAt": row[_EXPIRES],
        "name": row[_SESSION_NAME],
        "build": row[_BUILD],
        "tags": _json_list(row[_TAGS]),
        "metadata": _json_object(row[_METADATA]),
        "result": row[_RESULT],
        "resultReason": row[_RESULT_REASON],
        "durationSeconds": duration_seconds(row[_CREATED], row[_RELEASED]),
        "artifactCount": row[_ARTIFACT_COUNT],
        "stateHistory": state_history(row[_CREATED], row[_RELEASED], row[_EXPIRES], row[_QUEUED_AT]),
    }


def state_history(
    created_at: str, released_at: str | None, expires_at: str, queued_at: str | None
) -> list[dict[str, str]]:
    """The states a session went through, from its own row and its session request: `queued`
    (if it waited), `started`, then `released`, or `expired` when it ended at its expiresAt
    (as the expiry sweep, or a release that came after it, records). Instants are the API's
    text, all of one form, so they compare as text."""
    history = [{"state": "queued", "at": queued_at}] if queued_at is not None else []
    history.append({"state": "started", "at": created_at})
    if released_at is not None:
        history.append({"state": "released" if released_at < expires_at else "expired", "at": released_at})
    return history


def duration_seconds(created_at: str, released_at: str | None) -> float | None:
    """`releasedAt - createdAt` in seconds, to the microsecond; None while live."""
    if released_at is None:
        return None
    return (datetime.fromisoformat(released_at) - datetime.fromisoformat(created_at)).total_seconds()


def _json_list(text: str) -> list[Any]:
    return [] if text == "[]" else list(orjson.loads(text))


def _json_object(text: str) -> dict[str, Any]:
    return {} if text == "{}" else dict(orjson.loads(text))


@dataclass(frozen=True)
class SessionFilters:
    status: str | None = None  # "live" or "released"
    platform: str | None = None
    user_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None
    build: str | None = None
    result: str | None = None
    tags: tuple[str, ...] = ()  # every one must be present


async def list_page(
    organization_id: uuid.UUID, limit: int, before: datetime | None, filters: SessionFilters = SessionFilters()
) -> Page:
    """Up to `limit` sessions created strictly before `before`, newest first. With several tags
    the page walks the rarest tag's sessions (a heavy read: web.operations, core.heavy_reads)."""
    if len(set(filters.tags)) > 1:
        filters = dataclasses.replace(filters, tags=await _rarest_first(organization_id, filters.tags))
    query, values = page_statement(organization_id, limit, before, filters)
    return page_of(await _compiled(query).all(values), limit)


# Counting a tag's sessions stops here: past it, a tag is as common as can matter.
_TAG_COUNT_CAP = 10_000
_TAG_SIZE = CompiledRead(
    select(func.count()).select_from(
        select(col(SessionTag.created_at))
        .where(col(SessionTag.organization_id) == bindparam("organization_id"), col(SessionTag.tag) == bindparam("tag"))
        .limit(_TAG_COUNT_CAP)
        .subquery()
    )
)


async def _rarest_first(organization_id: uuid.UUID, tags: tuple[str, ...]) -> tuple[str, ...]:
    """The distinct tags, the one with the fewest sessions (counted up to a cap) first: the page
    walks the first tag's sessions and looks each other tag up."""
    distinct = tuple(dict.fromkeys(tags))
    sizes = {tag: (await _TAG_SIZE.all({"organization_id": organization_id, "tag": tag}))[0][0] for tag in distinct}
    return tuple(sorted(distinct, key=sizes.__getitem__))


def page_statement(
    organization_id: uuid.UUID, limit: int, before: datetime | None, filters: SessionFilters = SessionFilters()
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement `list_page` runs, and the values it binds."""
    values = {
        "organization_id": organization_id,
        "limit": limit + 1,
        "before": before,
        "platform": filters.platform,
        "user_id": filters.user_id,
        "device_id": filters.device_id,
        "build": filters.build,
        "result": filters.result,
    }
    tags = tuple(dict.fromkeys(filters.tags))  # each once, in the order given
    values.update((f"tag_{index}", tag) for index, tag in enumerate(tags))
    bounds = tuple(name for name in _OPTIONAL_BOUNDS if values[name] is not None)
    query = _page_query(bounds, filters.status, len(tags))
    return query, {name: value for name, value in values.items() if value is not None}


_OPTIONAL_BOUNDS: dict[str, Callable[[Any], ColumnElement[bool]]] = {
    "before": lambda value: col(SessionRecord.created_at) < value,
    "platform": lambda value: col(SessionRecord.platform) == value,
    "user_id": lambda value: col(SessionRecord.user_id) == value,
    "device_id": lambda value: col(SessionRecord.device_id) == value,
    "build": lambda value: col(SessionRecord.build) == value,
    "result": lambda value: col(SessionRecord.result) == value,
}


@functools.lru_cache(maxsize=1024)
def _page_query(bounds: tuple[str, ...], status: str | None, tags: int = 0) -> Select[Any]:
    """The page query for one combination of filters, built once: building a statement costs
    more than running it. The values are bound on each call.

    Each combination reads `limit + 1` entries of one keyset index (SessionRecord's indexes):
    the organization's, its user's, device's, platform's, build's, result's, user-and-platform's,
    user-and-device's or build-and-result's sessions by `created_at`, or its live ones. A device
    has one platform, so with a device the platform is the device's to check (one row), not each
    session's. With tags, the first tag's sessions are walked in `session_tags` (keyed the same
    way), and each other tag is one lookup of that key."""
    if "device_id" in bounds and "platform" in bounds:
        bounds = tuple(name for name in bounds if name != "platform")
        platform: tuple[ColumnElement[bool], ...] = (col(Device.platform) == bindparam("platform"),)
    else:
        platform = ()
    query = (
        _SESSION_VIEW.where(col(SessionRecord.organization_id) == bindparam("organization_id"))
        .where(*(_OPTIONAL_BOUNDS[name](bindparam(name)) for name in bounds), *platform)
        .order_by(col(SessionRecord.created_at).desc())
        .limit(bindparam("limit", type_=Integer))
    )
    if tags:
        query = _with_tags(query, bounds, tags)
    if status == "released":
        query = query.where(col(SessionRecord.released_at).is_not(None))
    elif status == "live":
        # An organization never has more live sessions than the fleet has devices: read them
        # all first (the partial index of live sessions), then filter and order them. Both
        # planners would otherwise walk a user's or a device's whole history, in order.
        live = (
            select(SessionRecord)
            .where(col(SessionRecord.organization_id) == bindparam("organization_id"), _LIVE)
            .cte("live_sessions")
            .prefix_with("MATERIALIZED")
        )
        query = ClauseAdapter(live).traverse(query)
    return query


_LIVE = col(SessionRecord.released_at).is_(None)


def _with_tags(query: Select[Any], bounds: tuple[str, ...], tags: int) -> Select[Any]:
    """`query` walking the first tag's entries of `session_tags` by `created_at` (its key), each
    joined to its session by the organization's unique `created_at`; the other tags must exist."""
    first = SessionTag
    walked = col(first.created_at)
    query = query.join(
        first,
        and_(
            col(first.organization_id) == col(SessionRecord.organization_id),
            col(first.created_at) == col(SessionRecord.created_at),
        ),
    ).where(col(first.organization_id) == bindparam("organization_id"), col(first.tag) == bindparam("tag_0"))
    if "before" in bounds:
        query = query.where(walked < bindparam("before"))
    for index in range(1, tags):
        other = aliased(SessionTag, name=f"tag_{index}")
        query = query.where(
            exists().where(
                col(other.organization_id) == col(SessionRecord.organization_id),
                col(other.created_at) == col(SessionRecord.created_at),
                col(other.tag) == bindparam(f"tag_{index}"),
            )
        )
    return query.order_by(None).order_by(walked.desc())


async def get_session(organization_id: uuid.UUID, session_id: uuid.UUID) -> Row[Any]:
    """The session as the API shows it (see _SESSION_VIEW); NotFound outside the organization."""
    row = await _compiled(_ONE_SESSION).first({"session_id": session_id, "organization_id": organization_id})
    return _found(row)


def session_view(*, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID) -> Row[Any]:
    """get_session() inside a transaction of the caller's."""
    found = _ONE_SESSION_IN_TRANSACTION.first(conn, {"session_id": session_id, "organization_id": organization_id})
    return _found(found)


def _found(row: Row[Any] | None) -> Row[Any]:
    if row is None:
        raise NotFound("No session with this id exists in the selected organization.")
    return row


_ONE_SESSION_IN_TRANSACTION = Prepared(_ONE_SESSION)


@functools.lru_cache(maxsize=1024)
def _compiled(statement: Select[Any]) -> CompiledRead:
    """The reads of every request run compiled (core.compiled_reads); one per statement
    (_page_query's, each kept while used, and _ONE_SESSION)."""
    return CompiledRead(statement)


# The stored facts of a session none were given for (every row of one insert has every column).
NO_FACTS: Mapping[str, Any] = {
    "name": None,
    "build": None,
    "tags": "[]",
    "metadata_json": "{}",
    "result": None,
    "result_reason": None,
}


@dataclass(frozen=True)
class NewSession:
    organization_id: uuid.UUID
    user_id: uuid.UUID
    device_id: uuid.UUID
    created_at: datetime | None = None  # None: now
    released_at: datetime | None = None
    id: uuid.UUID | None = None
    expires_at: datetime | None = None  # None: created_at + duration
    duration: timedelta | None = None  # None: the configured default
    facts: Mapping[str, Any] = field(default_factory=dict)  # stored columns (models.session_facts)
    tags: tuple[str, ...] = ()


def insert_sessions(*, conn: Connection, batch: list[NewSession]) -> list[uuid.UUID]:
    """Insert sessions, each at the first free instant of its organization; returns their ids.
    A writer that still loses a race for an instant (PostgreSQL) gets an IntegrityError that
    `is_instant_collision` recognizes: its caller may retry the transaction."""
    by_organization: dict[uuid.UUID, list[int]] = {}
    for index, new in enumerate(batch):
        by_organization.setdefault(new.organization_id, []).append(index)
    lock_organizations(conn=conn, organization_ids=by_organization)
    instants: dict[int, datetime] = {}
    for organization_id, indexes in by_organization.items():
        allocator = InstantAllocator(
            conn, col(SessionRecord.created_at), col(SessionRecord.organization_id), organization_id
        )
        allocated = allocator.allocate([batch[i].created_at for i in indexes])
        instants.update(zip(indexes, allocated, strict=True))
    rows: list[dict[str, Any]] = []
    default_duration = timedelta(minutes=settings.current().default_session_minutes)
    platforms = _platforms(conn=conn, device_ids={new.device_id for new in batch})
    for index, new in enumerate(batch):
        created_at = instants[index]
        # Moving to a free instant may pass these: keep them in order.
        released_at = max(new.released_at, created_at) if new.released_at is not None else None
        expires_at = max(new.expires_at or created_at + (new.duration or default_duration), created_at)
        rows.append(
            {
                "id": new.id or uuid.uuid4(),
                "organization_id": new.organization_id,
                "user_id": new.user_id,
                "device_id": new.device_id,
                "platform": platforms[new.device_id],
                "created_at": created_at,
                "released_at": released_at,
                "expires_at": expires_at,
                **NO_FACTS,
                **new.facts,
            }
        )
    if rows:
        insert_rows(conn, SessionRecord, rows)
        ended = (row for row in rows if row["released_at"] is not None)
        usage.note_lengths(
            conn=conn, lengths=((row["organization_id"], row["released_at"] - row["created_at"]) for row in ended)
        )
    tags = [
        {"organization_id": new.organization_id, "tag": tag, "created_at": row["created_at"], "session_id": row["id"]}
        for new, row in zip(batch, rows, strict=True)
        for tag in new.tags
    ]
    if tags:
        conn.execute(insert(SessionTag), tags)
    return [row["id"] for row in rows]


def _platforms(*, conn: Connection, device_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each device's platform, copied onto its sessions (see SessionRecord.platform)."""
    if not device_ids:
        return {}
    if len(device_ids) == 1:  # a start's
        (device_id,) = device_ids
        return {device_id: _DEVICE_PLATFORM.scalar(conn, {"device_id": device_id})}
    found = conn.execute(select(col(Device.id), col(Device.platform)).where(col(Device.id).in_(device_ids))).all()
    return {device_id: platform for device_id, platform in found}


_DEVICE_PLATFORM = Prepared(select(col(Device.platform)).where(col(Device.id) == bindparam("device_id")))


def lock_organizations(*, conn: Connection, organization_ids: Iterable[uuid.UUID]) -> None:
    """Writers of one organization's sessions take turns (see models.instants.take_turns)."""
    take_turns(conn=conn, scopes=(f"sessions:{organization_id}" for organization_id in organization_ids))


def is_instant_collision(exc: Exception) -> bool:
    """Whether `exc` says that another writer took an instant first."""
    if not isinstance(exc, IntegrityError):
        return False
    text = str(exc.orig).lower()
    return "uq_sessions_organization_created_at" in text or (
        "unique" in text and "sessions.organization_id, sessions.created_at" in text
    )
