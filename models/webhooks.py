"""Webhooks: an organization's endpoints, the outbox of session events, and the attempts log.

Each start, release and expiry of a session writes one delivery per subscribed endpoint into
the outbox (`enqueue`), in the transaction of the change: a committed change is delivered even
if the process dies right after, and a change rolled back never is. The webhook sender of
every server process claims due deliveries for a while (`claimed_until`) in short
transactions, sends them outside any transaction, and records each attempt, which schedules
the next one or ends the delivery; it records the attempts that ended and makes its next
claim in one transaction (`settle`), and testWebhookEndpoint records its one at once
(`record_attempt`). On PostgreSQL claims skip rows another
claimer holds (`FOR UPDATE SKIP LOCKED`); SQLite has one writer at a time anyway. A claim that
runs out (its process died) makes the delivery due again: delivery is at least once.

Endpoint changes are recorded in the audit log; an endpoint whose attempts have all failed
for `webhook_disable_after_seconds` is disabled, by the system.
"""

from __future__ import annotations

import functools
import json
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.outbound import AttemptResult, Reason, new_secret
from sessions_api.core.prepared import Prepared, insert_rows
from sessions_api.core.sealing import SecretBox, UnreadableSecret
from sessions_api.core.timestamps import format_utc, parse_rfc3339, utcnow
from sessions_api.models import audit
from sessions_api.models import events as event_log
from sessions_api.models.api_keys import Principal
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import InvalidInput, NotFound, limit_reached
from sessions_api.models.instants import InstantAllocator, take_turns
from sessions_api.models.paging import Page, read_page
from sessions_api.models.sessions import session_document, session_view
from sessions_api.models.tables import (
    AuditEventType,
    DeliveryStatus,
    EventRecord,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from sessions_api.models.text import is_storable

TEST_EVENT = "webhook.test"
# The session changes that become events, by their audit type (the same names).
SESSION_EVENTS = (
    AuditEventType.session_started,
    AuditEventType.session_released,
    AuditEventType.session_expired,
    AuditEventType.session_updated,
)
_NO_ENDPOINT = "No webhook endpoint with this id exists in the selected organization."
# A claim lasts this long beyond the attempt's own time limit before another process may retry it.
_CLAIM_MARGIN = timedelta(seconds=5)
# A due delivery left for want of a slot this long says its endpoint's window holds it back
# (web.delivery_windows grows it); one due for less will go with the next attempts that end.
_HELD_BACK_AFTER = timedelta(milliseconds=250)
_NEVER = datetime(9999, 1, 1, tzinfo=UTC)


# --- endpoints -------------------------------------------------------------------------------

_ENDPOINT_COLUMNS: tuple[ColumnElement[Any] | Mapped[Any], ...] = (
    uuid_text(col(WebhookEndpoint.id)).label("id"),
    uuid_text(col(WebhookEndpoint.organization_id)).label("organization_id"),
    col(WebhookEndpoint.url),
    col(WebhookEndpoint.description),
    col(WebhookEndpoint.events),
    col(WebhookEndpoint.enabled),
    rfc3339_text(col(WebhookEndpoint.created_at)).label("created_at"),
    rfc3339_text(col(WebhookEndpoint.updated_at)).label("updated_at"),
)
_ENDPOINT_VIEW = select(*_ENDPOINT_COLUMNS)


# What updateWebhookEndpoint may change, by the table's names.
CHANGEABLE = ("url", "events", "description", "enabled")


def create_endpoint(
    caller: Principal, url: str, events: Sequence[str], description: str | None
) -> tuple[Row[Any], str]:
    """A new endpoint of the caller's organization, and its signing secret (shown this once)."""
    organization_id = caller.organization_id
    secret = new_secret()
    endpoint_id = uuid.uuid4()
    cap = settings.current().max_webhook_endpoints
    with db.writing() as conn:
        take_turns(conn=conn, scopes=[f"webhooks:{organization_id}"])
        endpoints = conn.execute(
            select(func.count()).where(col(WebhookEndpoint.organization_id) == organization_id)
        ).scalar_one()
        if endpoints >= cap:
            raise limit_reached("webhook endpoints per organization", cap, "SESSIONS_API_MAX_WEBHOOK_ENDPOINTS")
        allocator = InstantAllocator(
            conn, col(WebhookEndpoint.created_at), col(WebhookEndpoint.organization_id), organization_id
        )
        now = allocator.next()
        conn.execute(
            insert(WebhookEndpoint).values(
                id=endpoint_id,
                organization_id=organization_id,
                url=_stored("url", url),
                description=_stored("description", description),
                events=_stored("events", events),
                enabled=True,
                secret=_box().seal(secret),
                created_at=now,
                updated_at=now,
            )
        )
        after = {
            "url": _stored("url", url),
            "events": _stored("events", events),
            "description": _stored("description", description),
        }
        _record(conn, caller.actor, organization_id, AuditEventType.webhook_endpoint_created, endpoint_id, None, after)
        return _endpoint_view(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id), secret


def list_endpoints(organization_id: uuid.UUID, limit: int, before: datetime | None) -> Page:
    """Up to `limit` endpoints of the organization created strictly before `before`, newest first."""
    where = col(WebhookEndpoint.organization_id) == organization_id
    return read_page(_ENDPOINT_VIEW, col(WebhookEndpoint.created_at), limit, before, where)


def get_endpoint(organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> Row[Any]:
    with db.reading() as conn:
        return _endpoint_view(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id)


def update_endpoint(caller: Principal, endpoint_id: uuid.UUID, changes: Mapping[str, Any]) -> Row[Any]:
    """Apply `changes` (of the CHANGEABLE fields; a description of None or "" clears it); the
    audit log records the fields that changed, before and after."""
    organization_id = caller.organization_id
    with db.writing() as conn:
        current = _locked_endpoint(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id)
        values = {name: _stored(name, value) for name, value in changes.items() if name in CHANGEABLE}
        values = {name: value for name, value in values.items() if value != current[name]}
        if values:
            before = {name: current[name] for name in values}
            after = dict(values)
            if values.get("enabled"):
                values["failing_since"] = None  # a fresh start: the whole window again before it is disabled
            values["updated_at"] = utcnow()
            conn.execute(update(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id).values(**values))
            event = AuditEventType.webhook_endpoint_updated
            _record(conn, caller.actor, organization_id, event, endpoint_id, before, after)
        return _endpoint_view(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id)


def _stored(name: str, value: Any) -> Any:
    """A field as it is stored; InvalidInput for text no database keeps (a lone surrogate)."""
    if isinstance(value, str) and not is_storable(value):
        raise InvalidInput(f"the {name} must not contain control characters or lone surrogates")
    if name == "events":
        return _unique(value)
    if name == "description":
        return value or None
    return value


def delete_endpoint(caller: Principal, endpoint_id: uuid.UUID) -> None:
    """Delete the endpoint with its pending deliveries and its attempts log."""
    organization_id = caller.organization_id
    with db.writing() as conn:
        # Locked first, as record_attempt locks it first: an attempt being recorded finishes before.
        current = _locked_endpoint(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id)
        conn.execute(delete(WebhookAttempt).where(col(WebhookAttempt.endpoint_id) == endpoint_id))
        conn.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id))
        conn.execute(delete(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id))
        before = {"url": current["url"], "events": current["events"]}
        _record(conn, caller.actor, organization_id, AuditEventType.webhook_endpoint_deleted, endpoint_id, before, None)


def rotate_secret(caller: Principal, endpoint_id: uuid.UUID) -> tuple[Row[Any], str]:
    """A new signing secret (shown this once); the old one also signs for the overlap."""
    organization_id = caller.organization_id
    secret = new_secret()
    now = utcnow()
    overlap = timedelta(seconds=settings.current().webhook_rotation_overlap_seconds)
    with db.writing() as conn:
        current = _locked_endpoint(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id)
        conn.execute(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.id) == endpoint_id)
            .values(
                secret=_box().seal(secret),
                previous_secret=current["secret"],  # as stored: sealed if it was
                previous_secret_until=now + overlap,
                updated_at=now,
            )
        )
        event = AuditEventType.webhook_endpoint_secret_rotated
        _record(conn, caller.actor, organization_id, event, endpoint_id, None, None)
        return _endpoint_view(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id), secret


def _endpoint_view(*, conn: Connection, organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(_ENDPOINT_VIEW.where(*_of_organization(organization_id, endpoint_id))).first()
    if row is None:
        raise NotFound(_NO_ENDPOINT)
    return row


def _locked_endpoint(*, conn: Connection, organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> dict[str, Any]:
    """The endpoint's stored fields, its row locked until the transaction ends (PostgreSQL)."""
    query = select(WebhookEndpoint).where(*_of_organization(organization_id, endpoint_id)).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(_NO_ENDPOINT)
    return dict(row)


def _of_organization(organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> tuple[ColumnElement[bool], ...]:
    return col(WebhookEndpoint.id) == endpoint_id, col(WebhookEndpoint.organization_id) == organization_id


def _unique(events: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(events))


def _record(
    conn: Connection,
    actor: audit.Actor,
    organization_id: uuid.UUID,
    type: AuditEventType,
    endpoint_id: uuid.UUID,
    before: audit.Snapshot | None,
    after: audit.Snapshot | None,
) -> None:
    event = audit.Event(
        organization_id, type, actor, audit.TargetKind.webhook_endpoint, endpoint_id, before=before, after=after
    )
    audit.record(conn=conn, events=[event])


# --- the outbox ------------------------------------------------------------------------------


def enqueue(
    *, conn: Connection, changes: Iterable[audit.Event], views: Mapping[uuid.UUID, Row[Any]] | None = None
) -> None:
    """Write the session events among `changes` (audit events about to be recorded) into the
    event log, and into the outbox one delivery of each per enabled endpoint of their
    organization that subscribes to its type. `views` holds sessions the caller has just read
    as they are now (session_view), which are not read again."""
    now = utcnow()
    events = []
    for change in changes:
        if change.type not in SESSION_EVENTS:
            continue
        session = (views or {}).get(change.target_id) or session_view(
            conn=conn, organization_id=change.organization_id, session_id=change.target_id
        )
        if change.type is AuditEventType.session_started:
            occurred = parse_rfc3339(session.created_at)
        elif change.type is AuditEventType.session_updated:
            occurred = now
        else:
            occurred = parse_rfc3339(session.released_at)
        document = session_document(session)
        events.append(
            event_log.NewEvent(change.organization_id, change.type.value, document, change.target_id, occurred)
        )
    _log_and_deliver(conn=conn, events=events, now=now)


@dataclass(frozen=True)
class Document:
    """An event that is not a session change (a queued start's: models.queue): its type, when it
    happened and its `data`, ready to send."""

    organization_id: uuid.UUID
    event_type: str
    occurred: str
    data: Mapping[str, Any]
    # The session it is about, where there is one (the event log's filter).
    session_id: uuid.UUID | None = None


def enqueue_documents(*, conn: Connection, events: Sequence[Document]) -> None:
    """Write `events` into the event log, and into the outbox one delivery of each per enabled
    endpoint of their organization that subscribes to its type."""
    logged = [
        event_log.NewEvent(
            event.organization_id, event.event_type, event.data, event.session_id, parse_rfc3339(event.occurred)
        )
        for event in events
    ]
    _log_and_deliver(conn=conn, events=logged, now=utcnow())


def _log_and_deliver(*, conn: Connection, events: Sequence[event_log.NewEvent], now: datetime) -> None:
    """The deliveries reference the logged events: the body each attempt sends is built from
    the event's row (`claims`), so it is stored once however many endpoints subscribe."""
    if not events:
        return
    subscribers = _subscribers(conn=conn, organization_ids={event.organization_id for event in events})
    rows = [
        _delivery(endpoint_id, event.id, event.type, None, now)
        for event in events
        for endpoint_id, types in subscribers.get(event.organization_id, [])
        if event.type in types
    ]
    _insert_deliveries(conn=conn, rows=rows)
    event_log.append(conn=conn, events=events)


def _subscribers(
    *, conn: Connection, organization_ids: set[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]]:
    """The enabled endpoints of these organizations, with the event types each subscribes to."""
    subscribers: dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]] = {}
    if len(organization_ids) == 1:  # a start's or a release's
        (organization_id,) = organization_ids
        endpoints: Iterable[Any] = _ENABLED_ENDPOINTS.rows(conn, {"organization_id": organization_id})
    else:
        endpoints = conn.execute(
            _ENABLED_ENDPOINTS_COLUMNS.where(
                col(WebhookEndpoint.organization_id).in_(organization_ids), col(WebhookEndpoint.enabled).is_(True)
            )
        )
    for endpoint in endpoints:
        subscribers.setdefault(endpoint.organization_id, []).append((endpoint.id, endpoint.events))
    return subscribers


_ENABLED_ENDPOINTS_COLUMNS = select(
    col(WebhookEndpoint.id), col(WebhookEndpoint.organization_id), col(WebhookEndpoint.events)
)
_ENABLED_ENDPOINTS = Prepared(
    _ENABLED_ENDPOINTS_COLUMNS.where(
        col(WebhookEndpoint.organization_id) == bindparam("organization_id"), col(WebhookEndpoint.enabled).is_(True)
    )
)


def _insert_deliveries(*, conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        # Each row's foreign key locks its endpoint (KEY SHARE) as it is inserted: in the order a
        # settling sender locks them (by id), or the two could wait for each other in a circle.
        rows.sort(key=lambda row: row["endpoint_id"].bytes)
        insert_rows(conn, WebhookDelivery, rows)


def _payload(event_type: str, occurred: str, data: Mapping[str, Any]) -> str:
    """The body every attempt sends, byte for byte: Standard Webhooks' `{type, timestamp, data}`."""
    return json.dumps({"type": event_type, "timestamp": occurred, "data": data}, separators=(",", ":"))


def _delivery(
    endpoint_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    payload: str | None,
    now: datetime,
    max_attempts: int = 0,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "event_type": event_type,
        "payload": payload,
        "status": DeliveryStatus.pending,
        "attempts": 0,
        "max_attempts": max_attempts or len(settings.current().webhook_retry_delays()) + 1,
        "next_attempt_at": now,
        "created_at": now,
    }


@dataclass(frozen=True)
class Claim:
    """A delivery a webhook sender holds until `claimed_until`: what it sends, where, signed how."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    # The current one first; during a rotation's overlap also the old one; none when this server
    # cannot unseal them (the attempt then fails with `secret_unreadable`, without a request).
    signing_secrets: tuple[str, ...]
    event_id: uuid.UUID
    event_type: str
    # The body, byte for byte the same on every attempt; None when the event has left the log.
    payload: str | None
    attempt: int  # the number of the attempt about to be made (1 for the first)
    max_attempts: int


@dataclass(frozen=True)
class Slots:
    """How many attempts the process may have in flight to each endpoint: `limits` for the
    endpoints it has a window for (0 while one asked it to wait), `default` for the others."""

    limits: Mapping[uuid.UUID, int]
    default: int

    def of(self, endpoint_id: uuid.UUID) -> int:
        return self.limits.get(endpoint_id, self.default)


@dataclass(frozen=True)
class Claimed:
    """What a settle claimed, and the endpoints whose slots held back deliveries due for
    `_HELD_BACK_AFTER` or longer (their windows may grow: web.delivery_windows)."""

    claims: list[Claim]
    held_back: frozenset[uuid.UUID]


def settle(
    ended: Sequence[tuple[Claim, AttemptResult]], limit: int, busy: Mapping[uuid.UUID, int], slots: Slots
) -> Claimed:
    """Record the attempts that `ended` and claim up to `limit` due deliveries of enabled
    endpoints, each endpoint up to its `slots` counting the `busy` ones the process still
    sends, in one write transaction: a busy sender spends one transaction per round of
    attempts, not two per attempt. The endpoints are locked in one order, so that two
    processes settling at once never wait for each other in a circle."""
    now = utcnow()
    with db.writing() as conn:
        _record_attempts(conn=conn, ended=ended, now=now)
        if limit <= 0:
            return Claimed([], frozenset())
        return _claim_due(conn=conn, limit=limit, busy=busy, slots=slots, now=now)


def _claim_due(*, conn: Connection, limit: int, busy: Mapping[uuid.UUID, int], slots: Slots, now: datetime) -> Claimed:
    """Claim up to `limit` due deliveries, round-robin over the endpoints that have some, each
    up to its free slots: an endpoint with a backlog (at its concurrency, or only slow) never
    hides another endpoint's deliveries, whatever their age."""
    timeout = timedelta(seconds=settings.current().webhook_timeout_seconds)
    candidates, held_back = _candidates(conn=conn, limit=limit, busy=busy, slots=slots, now=now)
    chosen = _round_robin(candidates, limit)
    if not chosen:
        return Claimed([], held_back)
    claimed_until = now + 2 * timeout + _CLAIM_MARGIN
    conn.execute(update(WebhookDelivery).where(col(WebhookDelivery.id).in_(chosen)).values(claimed_until=claimed_until))
    return Claimed(claims(conn=conn, where=col(WebhookDelivery.id).in_(chosen), now=now), held_back)


def _candidates(
    *, conn: Connection, limit: int, busy: Mapping[uuid.UUID, int], slots: Slots, now: datetime
) -> tuple[dict[uuid.UUID, list[uuid.UUID]], frozenset[uuid.UUID]]:
    """Due deliveries by endpoint (oldest first), each endpoint's up to its free slots, at most
    `4 * limit` in all, and the endpoints seen with more due than that. Each read leaves out
    the endpoints already full and the deliveries already taken, so a backlog is skipped
    instead of filling the window."""
    window = 4 * limit
    in_flight = dict(busy)
    known = set(in_flight) | set(slots.limits)
    full = {endpoint_id for endpoint_id in known if in_flight.get(endpoint_id, 0) >= slots.of(endpoint_id)}
    taken: dict[uuid.UUID, list[uuid.UUID]] = {}
    held_back: set[uuid.UUID] = set()
    count = 0
    for _ in range(limit):  # each read takes at least one delivery, or ends the loop
        rows = conn.execute(_due(conn=conn, window=window, full=full, taken=taken, now=now)).all()
        for row in rows:
            if row.endpoint_id in full:
                if row.next_attempt_at <= now - _HELD_BACK_AFTER:
                    held_back.add(row.endpoint_id)
                continue
            of_endpoint = taken.setdefault(row.endpoint_id, [])
            of_endpoint.append(row.id)
            count += 1
            if in_flight.get(row.endpoint_id, 0) + len(of_endpoint) >= slots.of(row.endpoint_id):
                full.add(row.endpoint_id)
        if len(rows) < window or count >= window:
            break
    return taken, frozenset(held_back)


def _due(
    *, conn: Connection, window: int, full: set[uuid.UUID], taken: Mapping[uuid.UUID, list[uuid.UUID]], now: datetime
) -> Select[uuid.UUID, uuid.UUID, datetime]:
    already = [delivery_id for ids in taken.values() for delivery_id in ids]
    query: Select[uuid.UUID, uuid.UUID, datetime] = (
        select(col(WebhookDelivery.id), col(WebhookDelivery.endpoint_id), col(WebhookDelivery.next_attempt_at))
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .where(
            # A literal, so that SQLite uses the partial index of pending deliveries.
            col(WebhookDelivery.status) == literal_column("'pending'"),
            col(WebhookDelivery.next_attempt_at) <= now,
            or_(col(WebhookDelivery.claimed_until).is_(None), col(WebhookDelivery.claimed_until) <= now),
            col(WebhookEndpoint.enabled).is_(True),
            col(WebhookDelivery.endpoint_id).not_in(full),
            col(WebhookDelivery.id).not_in(already),
        )
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(window)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
    return query


def _round_robin(candidates: Mapping[uuid.UUID, list[uuid.UUID]], limit: int) -> list[uuid.UUID]:
    """One delivery of each endpoint in turn (the endpoint with the oldest due delivery first),
    until `limit` are chosen or none is left."""
    chosen: list[uuid.UUID] = []
    queues = [list(ids) for ids in candidates.values()]
    while queues and len(chosen) < limit:
        for ids in queues:
            if len(chosen) < limit:
                chosen.append(ids.pop(0))
        queues = [ids for ids in queues if ids]
    return chosen


def any_due() -> bool:
    """Whether a delivery may be due now: a cheap indexed read before a claiming write."""
    now = utcnow()
    with db.reading() as conn:
        due = conn.execute(
            select(col(WebhookDelivery.id))
            .where(
                col(WebhookDelivery.status) == literal_column("'pending'"), col(WebhookDelivery.next_attempt_at) <= now
            )
            .limit(1)
        ).first()
        return due is not None


def claim_test(caller: Principal, endpoint_id: uuid.UUID) -> Claim:
    """A `webhook.test` event for the endpoint (enabled or not), claimed by the caller's process
    to send at once, with no retry."""
    organization_id = caller.organization_id
    now = utcnow()
    with db.writing() as conn:
        endpoint = _endpoint_view(conn=conn, organization_id=organization_id, endpoint_id=endpoint_id)
        payload = _payload(TEST_EVENT, format_utc(now), {"endpoint": endpoint.id})
        delivery = _delivery(endpoint_id, uuid.uuid4(), TEST_EVENT, payload, now, max_attempts=1)
        # Never due for a webhook sender: the caller's process sends it once, now.
        conn.execute(insert(WebhookDelivery).values({**delivery, "next_attempt_at": _NEVER, "claimed_until": _NEVER}))
        (claim,) = claims(conn=conn, where=col(WebhookDelivery.id) == delivery["id"], now=now)
        return claim


def _box() -> SecretBox:
    """The signing secrets' seal (core.sealing), with this app's keys."""
    return SecretBox(settings.current().secret_keys)


def reseal_secrets() -> int:
    """Seal every endpoint's signing secrets under the first configured key (`sessions-api
    secrets rotate`); how many endpoints were resealed."""
    box = _box()
    if not box.seals:
        raise InvalidInput("SESSIONS_API_SECRET_KEYS is not set: there is no key to seal with")
    resealed = 0
    with db.writing() as conn:
        rows = conn.execute(
            select(col(WebhookEndpoint.id), col(WebhookEndpoint.secret), col(WebhookEndpoint.previous_secret))
        ).all()
        for row in rows:
            previous = box.reseal(row.previous_secret) if row.previous_secret is not None else None
            conn.execute(
                update(WebhookEndpoint)
                .where(col(WebhookEndpoint.id) == row.id)
                .values(secret=box.reseal(row.secret), previous_secret=previous)
            )
            resealed += 1
    return resealed


def claims(*, conn: Connection, where: ColumnElement[bool], now: datetime) -> list[Claim]:
    """The deliveries `where` selects, each with what its next attempt sends and signs with."""
    rows = conn.execute(
        select(
            col(WebhookDelivery.id),
            col(WebhookDelivery.endpoint_id),
            col(WebhookDelivery.event_id),
            col(WebhookDelivery.event_type),
            col(WebhookDelivery.payload),
            col(EventRecord.occurred),
            col(EventRecord.data),
            col(WebhookDelivery.attempts),
            col(WebhookDelivery.max_attempts),
            col(WebhookEndpoint.url),
            col(WebhookEndpoint.secret),
            col(WebhookEndpoint.previous_secret),
            col(WebhookEndpoint.previous_secret_until),
        )
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .outerjoin(EventRecord, col(EventRecord.id) == col(WebhookDelivery.event_id))
        .where(where)
    )
    claimed = []
    box = _box()
    for row in rows:
        signing = _opened(box, row.secret)
        if (
            signing
            and row.previous_secret is not None
            and row.previous_secret_until is not None
            and row.previous_secret_until > now
        ):
            signing += _opened(box, row.previous_secret)
        claimed.append(
            Claim(
                row.id,
                row.endpoint_id,
                row.url,
                tuple(signing),
                row.event_id,
                row.event_type,
                row.payload if row.data is None else _logged_payload(row.event_type, row.occurred, row.data),
                row.attempts + 1,
                row.max_attempts,
            )
        )
    return claimed


def _logged_payload(event_type: str, occurred: datetime, data: str) -> str:
    """_payload of a logged event, its `data` spliced in as stored (the same bytes each time)."""
    head = _payload(event_type, format_utc(occurred), {})
    return f"{head.removesuffix('{}}')}{data}}}"


def erase_ended_rotations(now: datetime | None = None) -> int:
    """Erase the previous signing secret of every endpoint whose rotation overlap has ended: it
    signs nothing any more, and a secret kept is a secret that can leak. Returns how many."""
    with db.writing() as conn:
        return conn.execute(
            update(WebhookEndpoint)
            .where(
                col(WebhookEndpoint.previous_secret).is_not(None),
                col(WebhookEndpoint.previous_secret_until) <= (now or utcnow()),
            )
            .values(previous_secret=None, previous_secret_until=None)
        ).rowcount


def _opened(box: SecretBox, sealed: str) -> list[str]:
    """The secret, or nothing when this server cannot unseal it (a key rotation it was not told
    of): that endpoint's attempts then fail with `secret_unreadable`, and every other goes on."""
    try:
        return [box.open(sealed)]
    except UnreadableSecret:
        return []


def count_unreadable_secrets() -> int:
    """How many stored signing secrets (current, or previous within a rotation's overlap) this
    server cannot unseal with its keys: what /readyz and the startup log report."""
    box, now, unreadable = _box(), utcnow(), 0
    with db.reading() as conn:
        rows = conn.execute(
            select(
                col(WebhookEndpoint.secret),
                col(WebhookEndpoint.previous_secret),
                col(WebhookEndpoint.previous_secret_until),
            )
        )
        for row in rows:
            unreadable += not _opened(box, row.secret)
            overlapping = row.previous_secret_until is not None and row.previous_secret_until > now
            unreadable += row.previous_secret is not None and overlapping and not _opened(box, row.previous_secret)
    return unreadable


def record_attempt(claim: Claim, result: AttemptResult) -> Row[Any] | None:
    """Record an attempt, and schedule the next (after the retry schedule's wait, jittered by
    ±20%) or end the delivery; a failure that ends five days of only failures disables the
    endpoint. None when the delivery is gone (its endpoint deleted) or another process already
    recorded this attempt (its claim ran out)."""
    with db.writing() as conn:
        (attempt_id,) = _record_attempts(conn=conn, ended=[(claim, result)], now=utcnow())
        if attempt_id is None:
            return None
        return conn.execute(_ATTEMPT_VIEW.where(col(WebhookAttempt.id) == attempt_id)).one()


def _record_attempts(
    *, conn: Connection, ended: Sequence[tuple[Claim, AttemptResult]], now: datetime
) -> list[uuid.UUID | None]:
    """record_attempt for each of `ended`, in `conn`'s transaction, in order; the new attempts'
    ids (None where not recorded). Each endpoint is locked, and its attempts' instants
    allocated, once for all of its attempts."""
    delays = settings.current().webhook_retry_delays()
    recorded_ids: dict[uuid.UUID, uuid.UUID] = {}
    by_endpoint: dict[uuid.UUID, list[tuple[Claim, AttemptResult]]] = {}
    for claim, result in ended:
        by_endpoint.setdefault(claim.endpoint_id, []).append((claim, result))
    for endpoint_id in sorted(by_endpoint, key=lambda id: id.bytes):  # one locking order
        endpoint = _LOCKED_ENDPOINT.first(conn, {"endpoint_id": endpoint_id})
        if endpoint is None:
            continue
        health = endpoint._asdict()
        rows: list[dict[str, Any]] = []
        for claim, result in by_endpoint[endpoint_id]:
            values = _after_attempt(claim, result, now, delays)
            recorded = _delivery_update(tuple(values)).execute(
                conn, {**values, "delivery_id": claim.delivery_id, "attempts_before": claim.attempt - 1}
            )
            if not recorded:
                continue
            # A test, or an event gone from the log, says nothing of the endpoint's health.
            if claim.event_type != TEST_EVENT and result.error != Reason.EVENT_EXPIRED:
                _note_health(conn=conn, claim=claim, endpoint=health, succeeded=result.succeeded, now=now)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "endpoint_id": endpoint_id,
                    "delivery_id": claim.delivery_id,
                    "event_id": claim.event_id,
                    "event_type": claim.event_type,
                    "attempt": claim.attempt,
                    "succeeded": result.succeeded,
                    "response_status": result.response_status,
                    "error": result.error,
                    "duration_ms": result.duration_ms,
                }
            )
        if not rows:
            continue
        take_turns(conn=conn, scopes=[f"webhook-attempts:{endpoint_id}"])
        allocator = InstantAllocator(conn, col(WebhookAttempt.created_at), col(WebhookAttempt.endpoint_id), endpoint_id)
        for row, instant in zip(rows, allocator.allocate([None] * len(rows)), strict=True):
            row["created_at"] = instant
        recorded_ids.update((row["delivery_id"], row["id"]) for row in rows)
        insert_rows(conn, WebhookAttempt, rows)
    return [recorded_ids.get(claim.delivery_id) for claim, _ in ended]


_LOCKED_ENDPOINT = Prepared(
    select(col(WebhookEndpoint.organization_id), col(WebhookEndpoint.enabled), col(WebhookEndpoint.failing_since))
    .where(col(WebhookEndpoint.id) == bindparam("endpoint_id"))
    .with_for_update()
)


@functools.lru_cache(maxsize=8)
def _delivery_update(columns: tuple[str, ...]) -> Prepared:
    """What an attempt changes in its delivery (_after_attempt's columns), unless another
    process recorded that attempt first."""
    table: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    return Prepared(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == bindparam("delivery_id"),
            col(WebhookDelivery.attempts) == bindparam("attempts_before"),
        )
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
    )


def attempt_outcome(claim: Claim, result: AttemptResult) -> str:
    """`succeeded`, `retrying` (another attempt will follow) or `failed` (none will)."""
    if result.succeeded:
        return "succeeded"
    return "retrying" if _retried(claim, result) else "failed"


def _retried(claim: Claim, result: AttemptResult) -> bool:
    """Whether a failed attempt is followed by another: not once the attempts run out, nor when
    the event has left the log."""
    return claim.attempt < claim.max_attempts and result.error != Reason.EVENT_EXPIRED


def _after_attempt(claim: Claim, result: AttemptResult, now: datetime, delays: list[float]) -> dict[str, Any]:
    values: dict[str, Any] = {"attempts": claim.attempt, "claimed_until": None}
    if result.succeeded:
        values["status"] = DeliveryStatus.succeeded
    elif not _retried(claim, result) or not delays:
        values["status"] = DeliveryStatus.failed
    else:
        delay = delays[min(claim.attempt, len(delays)) - 1]  # the schedule may have changed since
        # Never sooner than a 429's or 503's Retry-After asked.
        wait = max(delay * random.uniform(0.8, 1.2), result.retry_after or 0.0)
        values["next_attempt_at"] = now + timedelta(seconds=wait)
    return values


def _note_health(*, conn: Connection, claim: Claim, endpoint: dict[str, Any], succeeded: bool, now: datetime) -> None:
    """Keep when the endpoint's failures began; disable it once they have lasted long enough.
    `endpoint` (organization_id, enabled, failing_since) is kept up to date for the next attempt."""
    if succeeded:
        if endpoint["failing_since"] is not None:
            endpoint["failing_since"] = None
            conn.execute(
                update(WebhookEndpoint).where(col(WebhookEndpoint.id) == claim.endpoint_id).values(failing_since=None)
            )
        return
    failing_since = endpoint["failing_since"] or now
    disable_after = timedelta(seconds=settings.current().webhook_disable_after_seconds)
    disable = endpoint["enabled"] and now - failing_since >= disable_after
    if endpoint["failing_since"] is not None and not disable:
        return  # already failing, not yet for long enough
    values: dict[str, Any] = {"failing_since": failing_since}
    if disable:
        values.update(enabled=False, updated_at=now)
    endpoint.update(failing_since=failing_since, enabled=endpoint["enabled"] and not disable)
    conn.execute(update(WebhookEndpoint).where(col(WebhookEndpoint.id) == claim.endpoint_id).values(**values))
    if disable:
        event = AuditEventType.webhook_endpoint_disabled
        before, after = {"enabled": True}, {"enabled": False, "failingSince": failing_since}
        _record(conn, audit.SYSTEM, endpoint["organization_id"], event, claim.endpoint_id, before, after)


# --- the attempts log ------------------------------------------------------------------------

_ATTEMPT_COLUMNS: tuple[ColumnElement[Any] | Mapped[Any], ...] = (
    uuid_text(col(WebhookAttempt.id)).label("id"),
    uuid_text(col(WebhookAttempt.event_id)).label("event_id"),
    col(WebhookAttempt.event_type),
    col(WebhookAttempt.attempt),
    col(WebhookAttempt.succeeded),
    col(WebhookAttempt.response_status),
    col(WebhookAttempt.error),
    col(WebhookAttempt.duration_ms),
    rfc3339_text(col(WebhookAttempt.created_at)).label("created_at"),
)
_ATTEMPT_VIEW = select(*_ATTEMPT_COLUMNS)


def list_attempts(organization_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int, before: datetime | None) -> Page:
    """Up to `limit` attempts to deliver to the endpoint made strictly before `before`, newest
    first; NotFound for an endpoint not of the organization."""
    get_endpoint(organization_id, endpoint_id)
    where = col(WebhookAttempt.endpoint_id) == endpoint_id
    return read_page(_ATTEMPT_VIEW, col(WebhookAttempt.created_at), limit, before, where)
