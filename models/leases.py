"""Sessions as leases on devices: start one on a free matching device, release it, expire it.

A device never has two live sessions: a partial unique index on live sessions' device says so
in the database, whatever the number of writers. Picking a device is a query for a free one
(on PostgreSQL `FOR UPDATE SKIP LOCKED`, so concurrent starts pick different devices); a
writer that still loses a race to the index retries with another device.

Each start, release and expiry is recorded in the audit log with the change: a start and a
release by the caller, an expiry by the system (also when a start or a release is the first
to notice it); and, in the same transaction, written to the webhooks' outbox.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.prepared import Prepared, insert_rows
from sessions_api.core.retry import retried
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit, plans, queue, session_facts, usage, webhooks
from sessions_api.models.api_keys import Principal
from sessions_api.models.errors import Conflict, Unprocessable
from sessions_api.models.sessions import (
    NewSession,
    insert_sessions,
    lock_organizations,
    session_view,
)
from sessions_api.models.tables import AuditEventType, Device, IdempotencyRecord, SessionRecord
from sessions_api.models.types import UTCDateTime

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# A start that loses a race for a device (or an instant, or its Idempotency-Key) looks again.
_ATTEMPTS = 5


@dataclass(frozen=True)
class DeviceWanted:
    """What a caller asks for: a platform, and optionally an exact version, kind and model."""

    platform: str
    os_version: str | None = None
    type: str | None = None
    name: str | None = None
    max_duration_minutes: int | None = None

    def fingerprint(self, facts: Mapping[str, Any] | None = None, queue_wait_seconds: int | None = None) -> str:
        """What an Idempotency-Key is bound to: the request in the API's own names, hashed."""
        request: dict[str, Any] = {
            "platform": self.platform,
            "osVersion": self.os_version,
            "type": self.type,
            "name": self.name,
            "maxDurationMinutes": self.max_duration_minutes,
        }
        if facts:  # a start without facts (or queue) keeps the fingerprint it always had
            request["facts"] = dict(facts)
        if queue_wait_seconds is not None:
            request["queue"] = {"maxWaitSeconds": queue_wait_seconds}
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def filters(self) -> dict[str, str | None]:
        """The device columns it matches on, by the table's names (None: any)."""
        return {"platform": self.platform, "os_version": self.os_version, "type": self.type, "name": self.name}

    def columns(self) -> dict[str, Any]:
        """What a queued start keeps of it (models.queue), by the table's names."""
        return {
            "platform": self.platform,
            "os_version": self.os_version,
            "type": self.type,
            "name": self.name,
            "max_duration_minutes": self.max_duration_minutes,
        }


@dataclass(frozen=True)
class Started:
    """A start's answer: the session, or the request it queued instead (its id here), as the
    API answers either, read in the start's own transaction."""

    body: dict[str, Any]
    replayed: bool
    queued_request_id: uuid.UUID | None = None


# What an Idempotency-Key keeps of a queued start: its request's id (a replay shows it as it is now).
_QUEUED_KEY = "sessionRequest"
# The refusals a start with `queue` waits out instead.
_WAITED_OUT = {"concurrency_limit_reached": queue.CONCURRENCY, "no_device_available": queue.DEVICE}


def start_session(
    caller: Principal,
    wanted: DeviceWanted,
    render: Callable[[Row[Any]], dict[str, Any]],
    idempotency_key: str | None = None,
    facts: Mapping[str, Any] | None = None,
    queue_wait_seconds: int | None = None,
) -> Started:
    """Lease a free matching device to the organization the caller acts on, with the session's
    `facts` (models.session_facts); `render` shapes the answer, which is kept for replay under
    `idempotency_key`. With `queue_wait_seconds`, a start that cannot lease now (or would pass
    a request already waiting) is queued for that long instead (models.queue)."""
    organization_id = caller.organization_id
    request_hash = wanted.fingerprint(facts, queue_wait_seconds)
    stored_facts = session_facts.stored(facts or {})
    tags = session_facts.tags_of(facts or {})

    def attempt() -> Started:
        with db.writing() as conn:
            # A replay needs no turn; a start takes it only now, so that a burst of one
            # organization's starts waits for the shortest part (a key used twice at once is
            # caught by its unique index: the loser's retry then replays the winner's answer).
            if idempotency_key is not None:
                stored = _stored_answer(
                    conn=conn, organization_id=organization_id, key=idempotency_key, request_hash=request_hash
                )
                if stored is not None:
                    if _QUEUED_KEY not in stored:
                        return Started(stored, replayed=True)
                    queued_id = uuid.UUID(stored[_QUEUED_KEY])  # shown as it is now
                    view = queue.view_in(conn=conn, organization_id=organization_id, request_id=queued_id)
                    return Started(queue.request_document(view), replayed=True, queued_request_id=queued_id)
            lock_organizations(conn=conn, organization_ids=[organization_id])
            started = _start_or_queue(
                conn=conn,
                caller=caller,
                wanted=wanted,
                facts=(stored_facts, tags),
                wait=queue_wait_seconds,
                render=render,
            )
            if idempotency_key is not None:
                queued = started.queued_request_id
                kept = started.body if queued is None else {_QUEUED_KEY: str(queued)}
                kept_answer = {
                    "organization_id": organization_id,
                    "key": idempotency_key,
                    "request_hash": request_hash,
                    "response_body": json.dumps(kept),
                    "created_at": utcnow(),
                }
                insert_rows(conn, IdempotencyRecord, [kept_answer])
            return started

    # Another writer took the device (or the instant, or the key) first: look again.
    return retried(attempt, attempts=_ATTEMPTS, retry_if=lambda exc: isinstance(exc, IntegrityError))


def _start_or_queue(
    *,
    conn: Connection,
    caller: Principal,
    wanted: DeviceWanted,
    facts: tuple[Mapping[str, Any], tuple[str, ...]],
    wait: int | None,
    render: Callable[[Row[Any]], dict[str, Any]],
) -> Started:
    """Lease now; with `wait`, queue instead when leasing now is refused for want of a device
    or of room in the plan, or would pass a request already waiting."""
    stored_facts, tags = facts
    organization_id = caller.organization_id
    if wait is not None and queue.must_wait(conn=conn, organization_id=organization_id, platform=wanted.platform):
        _refuse_unmatched(conn=conn, wanted=wanted)  # a start no device could ever serve never waits
        reason = queue.CONCURRENCY if _at_plan_limit(conn=conn, organization_id=organization_id) else queue.DEVICE
    else:
        try:
            session = lease(
                conn=conn,
                organization_id=organization_id,
                user_id=caller.user_id,
                actor=caller.actor,
                wanted=wanted,
                facts=stored_facts,
                tags=tags,
            )
            return Started(render(session), replayed=False)
        except Conflict as refused:
            if wait is None or refused.code not in _WAITED_OUT:
                raise
            reason = _WAITED_OUT[refused.code]
    queued = queue.enqueue(
        conn=conn,
        caller=caller,
        wanted=wanted.columns(),
        facts={"columns": dict(stored_facts), "tags": list(tags)},
        wait_seconds=wait,
        reason=reason,
    )
    return Started(queue.request_document(queued), replayed=False, queued_request_id=queued.row.id)


def _at_plan_limit(*, conn: Connection, organization_id: uuid.UUID) -> bool:
    live = plans.live_sessions(conn=conn, organization_id=organization_id, now=utcnow())
    return live >= plans.max_live_sessions(conn=conn, organization_id=organization_id)


def release_session(caller: Principal, session_id: uuid.UUID) -> Row[Any]:
    """End a live session of the organization the caller acts on now (or at its expiry, if that
    has passed); a released one is left as it is."""
    organization_id = caller.organization_id
    with db.writing() as conn:
        lease = _LEASE.first(conn, {"session_id": session_id, "organization_id": organization_id})
        if lease is not None and lease.released_at is None:
            released_at = max(min(utcnow(), lease.expires_at), lease.created_at)
            released = _RELEASE.execute(conn, {"session_id": session_id, "released_at": released_at})
            if released:
                usage.note_lengths(conn=conn, lengths=[(organization_id, released_at - lease.created_at)])
                # A session whose expiry passed has ended by itself; the release only noticed.
                ended = released_at < lease.expires_at
                event = AuditEventType.session_released if ended else AuditEventType.session_expired
                actor = caller.actor if ended else audit.SYSTEM
                ended_event = _session_event(organization_id, session_id, event, actor, released_at)
                view = session_view(conn=conn, organization_id=organization_id, session_id=session_id)
                webhooks.enqueue(conn=conn, changes=[ended_event], views={session_id: view})
                audit.record(conn=conn, events=[ended_event])
                return view
        # NotFound when there was none.
        return session_view(conn=conn, organization_id=organization_id, session_id=session_id)


# The write path's statements, prepared once (core.prepared).
_LEASE = Prepared(
    select(col(SessionRecord.created_at), col(SessionRecord.released_at), col(SessionRecord.expires_at)).where(
        col(SessionRecord.id) == bindparam("session_id"),
        col(SessionRecord.organization_id) == bindparam("organization_id"),
    )
)
_RELEASE = Prepared(
    update(SessionRecord)
    .where(col(SessionRecord.id) == bindparam("session_id"), col(SessionRecord.released_at).is_(None))
    .values(released_at=bindparam("released_at", type_=UTCDateTime()))
)
_STORED_ANSWER = Prepared(
    select(
        col(IdempotencyRecord.request_hash), col(IdempotencyRecord.response_body), col(IdempotencyRecord.created_at)
    ).where(
        col(IdempotencyRecord.organization_id) == bindparam("organization_id"),
        col(IdempotencyRecord.key) == bindparam("key"),
    )
)


def release_expired(now: datetime | None = None) -> int:
    """Release every live session past its expiry, at its expiry; returns how many. Fair by
    construction: every tenant's expired sessions go in the same statement, none waits for
    another's."""
    with db.writing() as conn:
        expired = _release_expired(conn=conn, now=now or utcnow())
        webhooks.enqueue(conn=conn, changes=expired)
        audit.record(conn=conn, events=expired)
        return len(expired)


# The most idempotency records one sweep deletes: a sweep stays short, the next goes on.
SWEEP_BATCH = 1000


def sweep_idempotency_records(now: datetime | None = None) -> int:
    """Delete the Idempotency-Key records older than their 24 hours (at most SWEEP_BATCH, oldest
    first, by their index); returns how many. A key past its window is free again anyway: this
    keeps the table from holding every answer ever given."""
    cutoff = (now or utcnow()) - IDEMPOTENCY_WINDOW
    key = tuple_(col(IdempotencyRecord.organization_id), col(IdempotencyRecord.key))
    stale = (
        select(col(IdempotencyRecord.organization_id), col(IdempotencyRecord.key))
        .where(col(IdempotencyRecord.created_at) <= cutoff)
        .order_by(col(IdempotencyRecord.created_at))
        .limit(SWEEP_BATCH)
    )
    with db.writing() as conn:
        return int(conn.execute(delete(IdempotencyRecord).where(key.in_(stale))).rowcount)


def _release_expired(*, conn: Connection, now: datetime, device_id: uuid.UUID | None = None) -> list[audit.Event]:
    """Release live sessions past their expiry (on `device_id` only, if given); returns the
    events to record for them."""
    if device_id is not None:
        expired = _EXPIRED_ON_DEVICE.rows(conn, {"now": now, "device_id": device_id})
    else:
        expired = list(conn.execute(_EXPIRED, {"now": now}).all())
    usage.note_lengths(conn=conn, lengths=[(row.organization_id, row.released_at - row.created_at) for row in expired])
    return [
        _session_event(row.organization_id, row.id, AuditEventType.session_expired, audit.SYSTEM, row.released_at)
        for row in expired
    ]


_EXPIRED = (
    update(SessionRecord)
    .where(
        col(SessionRecord.released_at).is_(None),
        col(SessionRecord.expires_at) <= bindparam("now", type_=UTCDateTime()),
    )
    .values(released_at=col(SessionRecord.expires_at))
    .returning(
        col(SessionRecord.id),
        col(SessionRecord.organization_id),
        col(SessionRecord.created_at),
        col(SessionRecord.released_at),
    )
)
# A start's: the expired lease still holding the device it picked.
_EXPIRED_ON_DEVICE = Prepared(_EXPIRED.where(col(SessionRecord.device_id) == bindparam("device_id")))


def _session_event(
    organization_id: uuid.UUID,
    session_id: uuid.UUID,
    type: AuditEventType,
    actor: audit.Actor,
    released_at: datetime,
) -> audit.Event:
    return audit.Event(
        organization_id, type, actor, audit.TargetKind.session, session_id, after={"releasedAt": released_at}
    )


def _stored_answer(
    *, conn: Connection, organization_id: uuid.UUID, key: str, request_hash: str
) -> dict[str, Any] | None:
    record = _STORED_ANSWER.first(conn, {"organization_id": organization_id, "key": key})
    if record is None:
        return None
    if record.created_at <= utcnow() - IDEMPOTENCY_WINDOW:
        conn.execute(
            delete(IdempotencyRecord).where(
                col(IdempotencyRecord.organization_id) == organization_id, col(IdempotencyRecord.key) == key
            )
        )
        return None
    if record.request_hash != request_hash:
        raise Unprocessable(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body in the last 24 hours.",
        )
    body: dict[str, Any] = json.loads(record.response_body)
    return body


def lease(
    *,
    conn: Connection,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    actor: audit.Actor,
    wanted: DeviceWanted,
    facts: Mapping[str, Any],
    tags: tuple[str, ...],
    device_id: uuid.UUID | None = None,
) -> Row[Any]:
    """Lease a device to the organization (whose turn the caller holds) for `user_id`, and
    record it as `actor`'s; returns the new session. Refused with 409 (no device free, or the
    plan's limit reached) or 422 (no such device) before anything is written. With
    `device_id`, only that device (if it is free and matches)."""
    config = settings.current()
    now = utcnow()
    live = plans.live_sessions(conn=conn, organization_id=organization_id, now=now)
    plan = plans.max_live_sessions(conn=conn, organization_id=organization_id)
    if live >= plan:
        raise Conflict(
            "concurrency_limit_reached",
            f"The organization holds {live} live sessions, the most its plan allows ({plan}); release one first.",
        )
    device_id = _pick_free_device(conn=conn, wanted=wanted, now=now, only=device_id)
    expired = _release_expired(conn=conn, now=now, device_id=device_id)  # an expired lease still holding it ends now
    minutes = min(wanted.max_duration_minutes or config.default_session_minutes, config.max_session_minutes)
    new = NewSession(organization_id, user_id, device_id, duration=timedelta(minutes=minutes), facts=facts, tags=tags)
    (session_id,) = insert_sessions(conn=conn, batch=[new])
    session = session_view(conn=conn, organization_id=organization_id, session_id=session_id)
    started = audit.Event(
        organization_id,
        AuditEventType.session_started,
        actor,
        audit.TargetKind.session,
        session_id,
        after={"device": device_id, "expiresAt": session.expires_at},
    )
    # The outbox first: its rows' foreign keys lock their endpoints, and the audit turns come last
    # (models.audit.record), or a change to an endpoint (locked, then audited) could deadlock it.
    webhooks.enqueue(conn=conn, changes=[*expired, started], views={session_id: session})
    audit.record(conn=conn, events=[*expired, started])
    return session


def _matching(wanted: DeviceWanted, only: uuid.UUID | None = None) -> list[ColumnElement[bool]]:
    """The conditions a device of the fleet meets to match `wanted` (and to be `only`, if given)."""
    matching: list[ColumnElement[bool]] = [col(Device.platform) == wanted.platform]
    if only is not None:
        matching.append(col(Device.id) == only)
    wanted_columns = (
        (col(Device.os_version), wanted.os_version),
        (col(Device.type), wanted.type),
        (col(Device.name), wanted.name),
    )
    for column, value in wanted_columns:
        if value is not None:
            matching.append(column == value)
    return matching


# The columns a start may match on, by DeviceWanted.filters()'s names.
_DEVICE_FILTERS: dict[str, Any] = {
    "platform": col(Device.platform),
    "os_version": col(Device.os_version),
    "type": col(Device.type),
    "name": col(Device.name),
    "device_id": col(Device.id),
}


@functools.lru_cache(maxsize=64)
def _free_device_query(filters: tuple[str, ...]) -> Prepared:
    """A random free device matching the given filters (PostgreSQL: locked, skipping locked
    ones, so that concurrent starts pick different devices; SQLite renders no FOR UPDATE)."""
    return Prepared(
        select(col(Device.id))
        .where(
            *(_DEVICE_FILTERS[name] == bindparam(name) for name in filters),
            col(Device.disabled).is_(False),
            ~plans.device_held(bindparam("now", type_=UTCDateTime())),
        )
        .order_by(func.random())
        .limit(1)
        .with_for_update(of=Device, skip_locked=True)
    )


def _refuse_unmatched(*, conn: Connection, wanted: DeviceWanted) -> None:
    """422 `no_matching_device` when no device of the fleet, free or not, matches `wanted`."""
    if conn.execute(select(exists().where(and_(*_matching(wanted))))).scalar():
        return
    api_names = {"platform": wanted.platform, "osVersion": wanted.os_version, "type": wanted.type, "name": wanted.name}
    described = ", ".join(f"{field} {value!r}" for field, value in api_names.items() if value is not None)
    raise Unprocessable("no_matching_device", f"No device of the fleet matches {described}.")


def _pick_free_device(*, conn: Connection, wanted: DeviceWanted, now: datetime, only: uuid.UUID | None) -> uuid.UUID:
    given: dict[str, Any] = {name: value for name, value in wanted.filters().items() if value is not None}
    if only is not None:
        given["device_id"] = only
    device_id: uuid.UUID | None = _free_device_query(tuple(given)).scalar(conn, {**given, "now": now})
    if device_id is not None:
        return device_id
    _refuse_unmatched(conn=conn, wanted=wanted)
    raise Conflict("no_device_available", "Every device matching the request is in use or offline; retry later.")
