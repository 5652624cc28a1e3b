"""Serving the queue of starts (models.queue): each server process runs rounds (web.queue),
when one of its requests may have freed a device and every `queue_poll_seconds`.

A round first times out the requests whose deadline passed, then starts one request at a time.
Each start is one decision, taken from one reading of the queue (the oldest requests), each
waiting organization's live sessions and plan, and the free devices: the organization holding
the fewest live sessions goes first (ties: the one waiting longest), so an organization under
its plan is never passed over for one that already holds more; within it, its requests are
tried oldest first, so a newer one only gets a device no older one can use. A request whose
grant ended (its user removed or no longer allowed to start, its key revoked or expired) is
cancelled in the decision's own transaction instead of started: the right is checked again at
the moment of effect.

Decisions take turns across processes (the `queue` turn: a PostgreSQL advisory lock; SQLite
has one writer), and each is one transaction with the waiting requests' rows locked: the
session, its events and the request's new status commit together or not at all, so a process
that dies mid-round starts nothing twice and loses nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.retry import retried
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit, grant_ends, leases, plans, queue, queue_waits
from sessions_api.models.errors import Conflict, Unprocessable
from sessions_api.models.instants import take_turns
from sessions_api.models.sessions import lock_organizations
from sessions_api.models.tables import (
    ApiKey,
    Device,
    Membership,
    Origin,
    Role,
    SessionRequest,
    SessionRequestStatus,
)

# The most starts one round makes, and the most queued requests (oldest first) one decision
# looks at: a round stays short, the next one goes on.
MAX_STARTS_PER_ROUND = 200
MAX_LOOKED_AT = 1000
_ATTEMPTS = 5
_DEVICE_COLUMNS: tuple[Mapped[Any], ...] = (
    col(Device.id),
    col(Device.platform),
    col(Device.os_version),
    col(Device.type),
    col(Device.name),
)
_REQUESTS = cast(Table, SessionRequest.__table__)  # type: ignore[attr-defined]
_KEY_COLUMNS: tuple[Any, ...] = (
    col(ApiKey.revoked_at).label("key_revoked_at"),
    col(ApiKey.expires_at).label("key_expires_at"),
)


@dataclass
class Round:
    """What a round did: the requests it started and those it timed out (their views), and
    those it cancelled."""

    started: list[queue.RequestView] = field(default_factory=list)
    timed_out: list[queue.RequestView] = field(default_factory=list)
    # The ids of requests cancelled because their grant ended.
    cancelled: list[uuid.UUID] = field(default_factory=list)


def serve(now: datetime | None = None) -> Round:
    """One round: time out what has waited too long, then start what can start now. A round
    with nothing queued is one read."""
    done = Round()
    now = now or utcnow()
    first_deadline = _first_deadline()
    if first_deadline is None:
        return done
    if first_deadline <= now:
        with db.writing() as conn:
            done.timed_out = queue.time_out(conn=conn, now=now)
    for _ in range(MAX_STARTS_PER_ROUND):
        decided = retried(_start_next, attempts=_ATTEMPTS, retry_if=lambda exc: isinstance(exc, IntegrityError))
        if decided is None:
            break
        if isinstance(decided, list):
            done.cancelled += decided
        else:
            done.started.append(decided)
    return done


def _first_deadline() -> datetime | None:
    with db.reading() as conn:
        return conn.execute(
            select(func.min(col(SessionRequest.deadline))).where(col(SessionRequest.status) == queue.QUEUED)
        ).scalar_one_or_none()


@dataclass(frozen=True)
class _Waiting:
    """An organization's queued requests (oldest first), and what it holds against its plan."""

    requests: list[Row[Any]]
    live: int
    max_live: int


def _start_next() -> queue.RequestView | list[uuid.UUID] | None:
    """Start the one request the queue serves next, from one reading of the queue, the plans and
    the free devices; None when nothing can start now (each request then says why it waits).
    When some requests' grants ended, cancel them instead (returns their ids)."""
    with db.writing() as conn:
        take_turns(conn=conn, scopes=["queue"])  # one decision at a time, across processes
        now = utcnow()
        rows = _oldest_queued(conn=conn)
        cancelled = _cancel_ended_grants(conn=conn, rows=rows, now=now)
        if cancelled:  # this decision only cancels (its audit turns come last); the next one starts
            return cancelled
        waiting = _waiting(conn=conn, rows=rows, now=now)
        free = _free_devices(
            conn=conn, now=now, platforms={row.platform for w in waiting.values() for row in w.requests}
        )
        why: dict[str, list[uuid.UUID]] = {queue.CONCURRENCY: [], queue.DEVICE: []}
        for organization_id in sorted(waiting, key=lambda id: (waiting[id].live, waiting[id].requests[0].created_at)):
            of_it = waiting[organization_id]
            if of_it.live >= of_it.max_live:
                why[queue.CONCURRENCY] += [row.id for row in of_it.requests if row.reason != queue.CONCURRENCY]
                continue
            for row in of_it.requests:
                device = next((device for device in free if _matches(row, device)), None)
                if device is not None and (started := _start(conn=conn, row=row, device_id=device.id)) is not None:
                    return started
            why[queue.DEVICE] += [row.id for row in of_it.requests if row.reason != queue.DEVICE]
        for reason, ids in why.items():
            if ids:
                conn.execute(update(SessionRequest).where(col(SessionRequest.id).in_(ids)).values(reason=reason))
        return None


def _oldest_queued(*, conn: Connection) -> list[Row[Any]]:
    """The oldest queued requests (their rows locked: a cancel or a time-out waits for this
    decision), each with what its grant stands on: its user's role and its key's state."""
    query = (
        select(_REQUESTS, col(Membership.role).label("member_role"), *_KEY_COLUMNS)
        .outerjoin(
            Membership,
            (col(Membership.organization_id) == col(SessionRequest.organization_id))
            & (col(Membership.user_id) == col(SessionRequest.user_id)),
        )
        .outerjoin(ApiKey, col(ApiKey.id) == col(SessionRequest.key_id))
        .where(col(SessionRequest.status) == queue.QUEUED)
        .order_by(col(SessionRequest.created_at))
        .limit(MAX_LOOKED_AT)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=_REQUESTS)
    return list(conn.execute(query).all())


def _ended_grant(row: Row[Any], now: datetime) -> queue.CancelReason | None:
    """Why the request may no longer start, if it may not: checked at the moment of effect."""
    if row.member_role is None:
        return queue.CancelReason.member_removed
    if Role(row.member_role) not in grant_ends.MAY_START:
        return queue.CancelReason.role_changed
    if row.key_revoked_at is not None:
        return queue.CancelReason.key_revoked
    if row.key_expires_at is not None and row.key_expires_at <= now:
        return queue.CancelReason.key_expired
    return None


def _cancel_ended_grants(*, conn: Connection, rows: list[Row[Any]], now: datetime) -> list[uuid.UUID]:
    """Cancel the requests whose user or key lost the right to start; returns their ids."""
    by_reason: dict[queue.CancelReason, list[uuid.UUID]] = {}
    for row in rows:
        if (reason := _ended_grant(row, now)) is not None:
            by_reason.setdefault(reason, []).append(row.id)
    events = []
    for reason, ids in by_reason.items():
        where = col(SessionRequest.id).in_(ids)
        events += queue.cancel_queued(conn=conn, actor=audit.SYSTEM, where=where, reason=reason)
    audit.record(conn=conn, events=events)
    return [id for ids in by_reason.values() for id in ids]


def _waiting(*, conn: Connection, rows: list[Row[Any]], now: datetime) -> dict[uuid.UUID, _Waiting]:
    """The queued requests by organization, with each organization's live sessions and plan."""
    by_organization: dict[uuid.UUID, list[Row[Any]]] = {}
    for row in rows:
        by_organization.setdefault(row.organization_id, []).append(row)
    if not by_organization:
        return {}
    standing = plans.live_against_plans(conn=conn, organization_ids=list(by_organization), now=now)
    return {
        organization_id: _Waiting(requests, *standing[organization_id])
        for organization_id, requests in by_organization.items()
    }


def _free_devices(*, conn: Connection, now: datetime, platforms: set[str]) -> list[Row[Any]]:
    """The enabled devices of `platforms` no live session holds, in random order."""
    if not platforms:
        return []
    query = (
        select(*_DEVICE_COLUMNS)
        .where(col(Device.platform).in_(platforms), col(Device.disabled).is_(False), ~plans.device_held(now))
        .order_by(func.random())
    )
    return list(conn.execute(query).all())


def _matches(request: Row[Any], device: Row[Any]) -> bool:
    return all(
        asked is None or asked == offered
        for asked, offered in (
            (request.platform, device.platform),
            (request.os_version, device.os_version),
            (request.type, device.type),
            (request.name, device.name),
        )
    )


def _start(*, conn: Connection, row: Row[Any], device_id: uuid.UUID) -> queue.RequestView | None:
    """Start the request's session on the device; None when a start without `queue` took the
    device first (the next decision reads the devices again)."""
    facts = json.loads(row.facts)
    lock_organizations(conn=conn, organization_ids=[row.organization_id])
    try:
        session = leases.lease(
            conn=conn,
            organization_id=row.organization_id,
            user_id=row.user_id,
            actor=audit.Actor(Origin.api, row.user_id, row.key_id),
            wanted=leases.DeviceWanted(row.platform, row.os_version, row.type, row.name, row.max_duration_minutes),
            facts=facts.get("columns", {}),
            tags=tuple(facts.get("tags", ())),
            device_id=device_id,
        )
    except (Conflict, Unprocessable):
        return None
    conn.execute(
        update(SessionRequest)
        .where(col(SessionRequest.id) == row.id)
        .values(status=SessionRequestStatus.started, session_id=uuid.UUID(session.id), ended_at=utcnow())
    )
    queue_waits.notify_left_queue(conn=conn, request_ids=[row.id])
    return queue.view_in(conn=conn, organization_id=row.organization_id, request_id=row.id)
