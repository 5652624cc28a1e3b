"""createSession and releaseSession for the performance-aware FastAPI peer, with the
guarantees the product gives them: a device never has two live sessions (the product's
partial unique index, and on PostgreSQL `FOR UPDATE SKIP LOCKED` so that concurrent starts
pick different devices), `created_at` unique within an organization (the paging cursor), and
`Idempotency-Key` replays for 24 hours. No audit log, no outbox: what a user who writes the
two operations for speed would write.

Like for like (issue 33): the durable work the product does in the same transaction is done
here too, written the way a user who cares about speed writes it: one audit row per change
(the product's `audit_events`), one row in the event log (`events`) and one outbox row per
enabled endpoint of the organization subscribed to the event's type (`webhook_deliveries`,
referencing the event). Instants are `now`; a collision on a unique index retries the whole
transaction. Nothing here sends the deliveries: the product's server also does that work in
the same process, which BENCHMARKS.md says beside the figures.

Each operation is one function of a Connection, run by `db.transact` in one transaction; a
start that loses a race to a unique index looks again, as the product's does.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from bench.contract import duration_seconds, facts_json, format_utc, state_history
from bench.core_sql import SESSION_COLUMNS, SQLITE, ApiError, Principal, db, devices, metadata, sessions

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("organization_id", Uuid, primary_key=True),
    Column("key", String, primary_key=True),
    Column("request_hash", String),
    Column("response_body", Text),
    Column("created_at", DateTime(timezone=True)),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("organization_id", Uuid),
    Column("created_at", DateTime(timezone=True)),
    Column("type", String),
    Column("origin", String),
    Column("actor_user_id", Uuid),
    Column("actor_key_id", Uuid),
    Column("target_kind", String),
    Column("target_id", Uuid),
    Column("data", JSON),
)
events = Table(
    "events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("organization_id", Uuid),
    Column("created_at", DateTime(timezone=True)),
    Column("type", String),
    Column("category", String),
    Column("admins_only", Boolean),
    Column("session_id", Uuid),
    Column("data", Text),
    Column("occurred", DateTime(timezone=True)),
)
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("organization_id", Uuid),
    Column("events", JSON),
    Column("enabled", Boolean),
)
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("endpoint_id", Uuid),
    Column("event_id", Uuid),
    Column("event_type", String),
    Column("status", String),
    Column("attempts", Integer),
    Column("max_attempts", Integer),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True)),
)

WRITERS = ("admin", "readwrite")
MAX_ATTEMPTS = 8
IDEMPOTENCY_WINDOW = timedelta(hours=24)
DEFAULT_MINUTES, MAX_MINUTES = 60, 24 * 60
_ATTEMPTS = 5

_HELD = exists().where(
    sessions.c.device_id == devices.c.id, sessions.c.released_at.is_(None), sessions.c.expires_at > bindparam("now")
)
FREE_DEVICE = (
    select(devices.c.id, devices.c.platform)
    .where(devices.c.platform == bindparam("platform"), devices.c.disabled.is_(False), ~_HELD)
    .order_by(func.random())
    .limit(1)
)
if not SQLITE:
    FREE_DEVICE = FREE_DEVICE.with_for_update(of=devices, skip_locked=True)
STORED = select(idempotency_keys.c.request_hash, idempotency_keys.c.response_body, idempotency_keys.c.created_at).where(
    idempotency_keys.c.organization_id == bindparam("organization_id"), idempotency_keys.c.key == bindparam("key")
)
ONE_IN = SESSION_COLUMNS.where(sessions.c.id == bindparam("session_id"))
SUBSCRIBED = select(webhook_endpoints.c.id, webhook_endpoints.c.events).where(
    webhook_endpoints.c.organization_id == bindparam("organization_id"), webhook_endpoints.c.enabled.is_(True)
)
ADD_AUDIT, ADD_EVENT, ADD_DELIVERIES = insert(audit_events), insert(events), insert(webhook_deliveries)


def _record(conn, principal: Principal, event_type: str, session: dict[str, Any], now: datetime, after: dict) -> None:
    """The audit row, the event and its outbox rows of one session change, in its transaction."""
    at = _utc(now)
    organization_id = principal.organization_id
    conn.execute(
        ADD_AUDIT,
        {
            "id": uuid.uuid4(),
            "organization_id": organization_id,
            "created_at": at,
            "type": event_type,
            "origin": "api_key",
            "actor_user_id": principal.user_id,
            "actor_key_id": principal.key_id,
            "target_kind": "session",
            "target_id": uuid.UUID(session["id"]),
            "data": {"after": after},
        },
    )
    event_id = uuid.uuid4()
    conn.execute(
        ADD_EVENT,
        {
            "id": event_id,
            "organization_id": organization_id,
            "created_at": at,
            "type": event_type,
            "category": "session",
            "admins_only": False,
            "session_id": uuid.UUID(session["id"]),
            "data": json.dumps(session, separators=(",", ":")),
            "occurred": at,
        },
    )
    subscribed = [
        endpoint.id
        for endpoint in conn.execute(SUBSCRIBED, {"organization_id": organization_id})
        if event_type in endpoint.events
    ]
    if subscribed:
        outbox = {"event_id": event_id, "event_type": event_type, "status": "pending", "attempts": 0}
        rows = [
            {**outbox, "id": uuid.uuid4(), "endpoint_id": endpoint_id, "max_attempts": MAX_ATTEMPTS}
            | {"next_attempt_at": at, "created_at": at}
            for endpoint_id in subscribed
        ]
        conn.execute(ADD_DELIVERIES, rows)


class Replayed(dict):
    """A stored answer to a start under the same Idempotency-Key."""


def _utc(moment: datetime) -> datetime:
    # SQLite keeps instants as naive UTC text, as the product writes them.
    return moment.replace(tzinfo=None) if SQLITE else moment


def session_document(row: Any) -> dict[str, Any]:
    sid, org, user, device, platform, dtype, name, os_version, created, released, expires, *facts, queued = row
    return {
        "id": str(sid),
        "organization": str(org),
        "user": str(user),
        "device": {"id": str(device), "platform": platform, "type": dtype, "name": name, "osVersion": os_version},
        "createdAt": format_utc(created),
        "releasedAt": format_utc(released) if released is not None else None,
        "expiresAt": format_utc(expires),
        **facts_json(*facts),
        "durationSeconds": duration_seconds(created, released),
        "stateHistory": state_history(
            format_utc(created),
            format_utc(released) if released is not None else None,
            format_utc(expires),
            format_utc(queued) if queued is not None else None,
        ),
    }


def _start(conn, principal: Principal, platform: str, minutes: int, key: str | None, request_hash: str):
    now = datetime.now(UTC)
    if key is not None:
        stored = conn.execute(STORED, {"organization_id": principal.organization_id, "key": key}).first()
        if stored is not None and stored.created_at.replace(tzinfo=UTC) > now - IDEMPOTENCY_WINDOW:
            if stored.request_hash != request_hash:
                reused = _error("idempotency_key_reused", "This Idempotency-Key was used with another body.")
                raise ApiError(422, reused)
            return Replayed(json.loads(stored.response_body))
        if stored is not None:
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.organization_id == principal.organization_id, idempotency_keys.c.key == key
                )
            )
    device = conn.execute(FREE_DEVICE, {"platform": platform, "now": _utc(now)}).first()
    if device is None:
        raise ApiError(409, _error("no_device_available", "Every matching device is in use; retry later."))
    session_id = uuid.uuid4()
    conn.execute(
        insert(sessions).values(
            id=session_id,
            organization_id=principal.organization_id,
            user_id=principal.user_id,
            device_id=device.id,
            platform=device.platform,
            created_at=_utc(now),
            expires_at=_utc(now + timedelta(minutes=minutes)),
        )
    )
    body = session_document(conn.execute(ONE_IN, {"session_id": session_id}).one())
    _record(conn, principal, "session.started", body, now, {"device": str(device.id), "expiresAt": body["expiresAt"]})
    if key is not None:
        conn.execute(
            insert(idempotency_keys).values(
                organization_id=principal.organization_id,
                key=key,
                request_hash=request_hash,
                response_body=json.dumps(body),
                created_at=_utc(now),
            )
        )
    return body


async def start_session(principal: Principal, body: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The new session's document (a `Replayed` one for a replay); ApiError as the product answers."""
    if principal.role not in WRITERS:
        raise ApiError(403, _error("forbidden", "Your role in this organization does not allow this operation."))
    minutes = min(body.get("maxDurationMinutes") or DEFAULT_MINUTES, MAX_MINUTES)
    request_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    for attempt in range(_ATTEMPTS):
        try:
            return await db.transact(_start, principal, body["platform"], minutes, key, request_hash)
        except IntegrityError:  # another start took the device, the instant or the key first
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _release(conn, principal: Principal, session_id: uuid.UUID) -> dict[str, Any]:
    where = (sessions.c.id == session_id, sessions.c.organization_id == principal.organization_id)
    lease = conn.execute(select(sessions.c.created_at, sessions.c.released_at, sessions.c.expires_at).where(*where))
    lease = lease.first()
    if lease is None:
        raise ApiError(404, _error("not_found", "No session with this id exists in the selected organization."))
    if lease.released_at is None:
        now = datetime.now(UTC)
        released_at = max(min(_utc(now), lease.expires_at), lease.created_at)
        done = conn.execute(
            sessions.update().where(*where, sessions.c.released_at.is_(None)).values(released_at=released_at)
        )
        body = session_document(conn.execute(ONE_IN, {"session_id": session_id}).one())
        if done.rowcount:
            ended = "session.released" if released_at < lease.expires_at else "session.expired"
            _record(conn, principal, ended, body, now, {"releasedAt": body["releasedAt"]})
        return body
    return session_document(conn.execute(ONE_IN, {"session_id": session_id}).one())


async def release_session(principal: Principal, session_id: uuid.UUID) -> dict[str, Any]:
    if principal.role not in WRITERS:
        raise ApiError(403, _error("forbidden", "Your role in this organization does not allow this operation."))
    for attempt in range(_ATTEMPTS):
        try:
            return await db.transact(_release, principal, session_id)
        except IntegrityError:  # another change of the organization took the instant first
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
