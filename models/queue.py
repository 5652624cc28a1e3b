"""The queue of starts: a createSession with `queue` that cannot lease at once waits here as a
session request until a device frees up for it (models.queue_serving), its deadline passes or
its caller cancels it.

A request is served oldest first within its organization. A start with `queue` never passes a
request already waiting: when its organization has requests queued, or any organization waits
for a device of its platform, it joins the queue (`must_wait`). An organization may have at
most its plan's `maxQueuedSessions` requests waiting (models.plans); past that a start gets
`409 queue_full`, whose message gives the counts the live view (`plans.concurrency`) shows.

Requests are written in the transaction of the start (under the organization's turn, so the
count and the insert agree), and leave the queue in the transaction that starts their session,
times them out or cancels them: nothing is started twice or lost, whatever process dies.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, func, insert, or_, select, update
from sqlalchemy.orm import Mapped
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit, plans, queue_waits, webhooks
from sessions_api.models.api_keys import Principal
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import Conflict, NotFound
from sessions_api.models.instants import InstantAllocator
from sessions_api.models.paging import read_page
from sessions_api.models.sessions import session_document, session_view
from sessions_api.models.tables import AuditEventType, SessionRequest, SessionRequestStatus

QUEUED = SessionRequestStatus.queued
# Why a request waits: its organization's plan is full, or no matching device is free.
CONCURRENCY = "concurrency"
DEVICE = "device"
QUEUED_EVENT = "session.queued"
TIMED_OUT_EVENT = "session.queue_timed_out"
CANCELLED_EVENT = "session.queue_cancelled"


class CancelReason(enum.StrEnum):
    """Why a request was cancelled: its caller asked, or the grant it waits on ended (every
    grant ends with its holder's right: docs/contributors/security.md)."""

    caller = "caller"
    member_removed = "member_removed"
    role_changed = "role_changed"
    key_revoked = "key_revoked"
    key_expired = "key_expired"


_NO_REQUEST = "No session request with this id exists in the selected organization."

_VIEW_COLUMNS: tuple[ColumnElement[Any] | Mapped[Any], ...] = (
    col(SessionRequest.id),
    uuid_text(col(SessionRequest.id)).label("id_text"),
    col(SessionRequest.organization_id),
    uuid_text(col(SessionRequest.organization_id)).label("organization"),
    uuid_text(col(SessionRequest.user_id)).label("user"),
    col(SessionRequest.status),
    col(SessionRequest.reason),
    rfc3339_text(col(SessionRequest.created_at)).label("created_at"),
    rfc3339_text(col(SessionRequest.deadline)).label("deadline"),
    rfc3339_text(col(SessionRequest.ended_at)).label("ended_at"),
    col(SessionRequest.session_id),
    col(SessionRequest.cancel_reason),
)
_VIEW = select(*_VIEW_COLUMNS)


@dataclass(frozen=True)
class RequestView:
    """A request as the API answers it: its row, its place in the queue, its session if any."""

    row: Row[Any]
    position: int | None
    session: dict[str, Any] | None

    @property
    def created_at(self) -> str:  # the list's cursor (handlers.listing)
        return str(self.row.created_at)


def must_wait(*, conn: Connection, organization_id: uuid.UUID, platform: str) -> bool:
    """Whether a start with `queue` would pass a request already waiting: one of its own
    organization's, or any organization's waiting for a free device of `platform`."""
    waiting = select(col(SessionRequest.id)).where(
        col(SessionRequest.status) == QUEUED,
        or_(
            col(SessionRequest.organization_id) == organization_id,
            (col(SessionRequest.platform) == platform) & (col(SessionRequest.reason) == DEVICE),
        ),
    )
    return conn.execute(waiting.limit(1)).first() is not None


def enqueue(
    *,
    conn: Connection,
    caller: Principal,
    wanted: Mapping[str, Any],
    facts: Mapping[str, Any],
    wait_seconds: int,
    reason: str,
) -> RequestView:
    """Queue a start in the caller's organization (whose turn the caller holds), or refuse it
    with `409 queue_full`; `wanted` is models.leases.DeviceWanted's fields. Returns the request
    as the API answers it."""
    organization_id = caller.organization_id
    plan = plans.plan_of(conn=conn, organization_id=organization_id)
    queued = _queued_count(conn=conn, organization_id=organization_id)
    if queued >= plan.max_queued_sessions:
        live = plans.live_sessions(conn=conn, organization_id=organization_id, now=utcnow())
        raise Conflict(
            "queue_full",
            f"The organization holds {live} live sessions (its plan allows {plan.max_live_sessions}) and has "
            f"{queued} starts queued, the most its plan allows ({plan.max_queued_sessions}); retry later.",
        )
    allocator = InstantAllocator(
        conn, col(SessionRequest.created_at), col(SessionRequest.organization_id), organization_id
    )
    queued_at = allocator.next()
    request_id = uuid.uuid4()
    conn.execute(
        insert(SessionRequest).values(
            id=request_id,
            organization_id=organization_id,
            user_id=caller.user_id,
            key_id=caller.key_id,
            created_at=queued_at,
            deadline=queued_at + timedelta(seconds=wait_seconds),
            status=QUEUED,
            reason=reason,
            facts=json.dumps(dict(facts)),
            **wanted,
        )
    )
    view = view_in(conn=conn, organization_id=organization_id, request_id=request_id)
    queued_event = webhooks.Document(organization_id, QUEUED_EVENT, view.row.created_at, request_document(view))
    webhooks.enqueue_documents(conn=conn, events=[queued_event])
    return view


def view_in(*, conn: Connection, organization_id: uuid.UUID, request_id: uuid.UUID) -> RequestView:
    """The request as the API answers it, read in the caller's transaction."""
    row = conn.execute(
        _VIEW.where(col(SessionRequest.id) == request_id, col(SessionRequest.organization_id) == organization_id)
    ).first()
    if row is None:
        raise NotFound(_NO_REQUEST)
    return _viewed(conn=conn, rows=[row])[0]


def get_request(organization_id: uuid.UUID, request_id: uuid.UUID) -> RequestView:
    with db.reading(snapshot=True) as conn:
        return view_in(conn=conn, organization_id=organization_id, request_id=request_id)


@dataclass(frozen=True)
class ViewedPage:
    rows: Sequence[RequestView]
    has_more: bool


def list_page(organization_id: uuid.UUID, limit: int, before: datetime | None, status: str | None) -> ViewedPage:
    """A page of the organization's requests, newest first, of one status if given."""
    where = [col(SessionRequest.organization_id) == organization_id]
    if status is not None:
        where.append(col(SessionRequest.status) == status)
    with db.reading(snapshot=True) as conn:  # the page, positions and sessions of one moment
        page = read_page(_VIEW, col(SessionRequest.created_at), limit, before, *where, conn=conn)
        return ViewedPage(_viewed(conn=conn, rows=page.rows), page.has_more)


def cancel(caller: Principal, request_id: uuid.UUID) -> RequestView:
    """Take a queued request out of the queue; a cancelled one stays as it is, one that has
    left the queue otherwise answers `409 request_not_queued`."""
    organization_id = caller.organization_id
    with db.writing() as conn:
        view = view_in(conn=conn, organization_id=organization_id, request_id=request_id)
        if view.row.status == QUEUED:
            of_request = col(SessionRequest.id) == request_id
            cancelled = cancel_queued(conn=conn, actor=caller.actor, where=of_request, reason=CancelReason.caller)
            if not cancelled:  # served or timed out in the meantime: say what happened
                return cancel(caller, request_id)
            audit.record(conn=conn, events=cancelled)
            return view_in(conn=conn, organization_id=organization_id, request_id=request_id)
        if view.row.status == SessionRequestStatus.cancelled:
            return view
        raise Conflict(
            "request_not_queued",
            f"This session request is {view.row.status} and no longer queued; it cannot be cancelled.",
        )


def cancel_queued(
    *, conn: Connection, actor: audit.Actor, where: ColumnElement[bool], reason: CancelReason
) -> list[audit.Event]:
    """Cancel the queued requests `where` selects, for `reason`, each sent to the webhooks as
    `session.queue_cancelled`. Returns the audit events the caller records, once every other
    lock it needs is taken (models.audit.record)."""
    ended = conn.execute(
        update(SessionRequest)
        .where(where, col(SessionRequest.status) == QUEUED)
        .values(status=SessionRequestStatus.cancelled, cancel_reason=reason.value, ended_at=utcnow())
        .returning(col(SessionRequest.id), col(SessionRequest.organization_id))
    ).all()
    views = _left_queue(conn=conn, ended=ended, event=CANCELLED_EVENT)
    return [
        audit.Event(
            view.row.organization_id,
            AuditEventType.session_queue_cancelled,
            actor,
            audit.TargetKind.session_request,
            view.row.id,
            before={"status": QUEUED.value},
            after={"status": SessionRequestStatus.cancelled.value, "reason": reason.value},
        )
        for view in views
    ]


def time_out(*, conn: Connection, now: datetime) -> list[RequestView]:
    """End every queued request whose deadline has passed, at its deadline; returns them."""
    expired = select(col(SessionRequest.id)).where(
        col(SessionRequest.status) == QUEUED, col(SessionRequest.deadline) <= now
    )
    if conn.dialect.name == "postgresql":  # one being served is left to that round (it may start)
        expired = expired.with_for_update(skip_locked=True)
    ids = conn.execute(expired).scalars().all()
    if not ids:
        return []
    ended = conn.execute(
        update(SessionRequest)
        .where(col(SessionRequest.id).in_(ids), col(SessionRequest.status) == QUEUED)
        .values(status=SessionRequestStatus.timed_out, ended_at=col(SessionRequest.deadline))
        .returning(col(SessionRequest.id), col(SessionRequest.organization_id))
    ).all()
    return _left_queue(conn=conn, ended=ended, event=TIMED_OUT_EVENT)


def _left_queue(*, conn: Connection, ended: Sequence[Row[uuid.UUID, uuid.UUID]], event: str) -> list[RequestView]:
    """The requests (id, organization_id) that just left the queue, as they are now: their
    long-polls woken when the transaction commits, and `event` written to the webhooks."""
    views = [view_in(conn=conn, organization_id=row.organization_id, request_id=row.id) for row in ended]
    queue_waits.notify_left_queue(conn=conn, request_ids=[row.id for row in ended])
    webhooks.enqueue_documents(
        conn=conn,
        events=[
            webhooks.Document(view.row.organization_id, event, view.row.ended_at, request_document(view))
            for view in views
        ],
    )
    return views


def request_document(view: RequestView) -> dict[str, Any]:
    """A request as the API answers it (getSessionRequest, and webhook events' `data`)."""
    row = view.row
    return {
        "id": row.id_text,
        "organization": row.organization,
        "user": row.user,
        "status": row.status,
        "reason": row.reason,
        "position": view.position,
        "queuedAt": row.created_at,
        "deadline": row.deadline,
        "endedAt": row.ended_at,
        "cancelReason": row.cancel_reason,
        "session": view.session,
    }


def _queued_count(*, conn: Connection, organization_id: uuid.UUID) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                col(SessionRequest.organization_id) == organization_id, col(SessionRequest.status) == QUEUED
            )
        ).scalar_one()
    )


def _viewed(*, conn: Connection, rows: Sequence[Row[Any]]) -> list[RequestView]:
    """The rows with their positions (1-based, among their organization's queued requests,
    oldest first) and their sessions."""
    positions: dict[uuid.UUID, int] = {}
    for organization_id in {row.organization_id for row in rows if row.status == QUEUED}:
        oldest_first = conn.execute(
            select(col(SessionRequest.id))
            .where(col(SessionRequest.organization_id) == organization_id, col(SessionRequest.status) == QUEUED)
            .order_by(col(SessionRequest.created_at))
        ).scalars()
        positions.update((request_id, place) for place, request_id in enumerate(oldest_first, start=1))
    return [
        RequestView(
            row,
            positions.get(row.id),
            None
            if row.session_id is None
            else session_document(
                session_view(conn=conn, organization_id=row.organization_id, session_id=row.session_id)
            ),
        )
        for row in rows
    ]
