"""Sessions as leases on devices: start one on a free matching device, release it, expire it.

A device never has two live sessions: a partial unique index on live sessions' device says so
in the database, whatever the number of writers. Picking a device is a query for a free one
(on PostgreSQL `FOR UPDATE SKIP LOCKED`, so concurrent starts pick different devices); a
writer that still loses a race to the index retries with another device.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from models.errors import Conflict, NotFound, Unprocessable
from models.sessions import NewSession, get_session, insert_sessions, lock_organizations
from models.tables import Device, IdempotencyRecord, SessionRecord
from sessions_api import db, settings
from sessions_api.timestamps import utcnow

IDEMPOTENCY_WINDOW = timedelta(hours=24)
_ATTEMPTS = 5


@dataclass(frozen=True)
class DeviceWanted:
    """What a caller asks for: a platform, and optionally an exact version, kind and model."""

    platform: str
    osVersion: str | None = None  # noqa: N815  (the API's own names, hashed for idempotency)
    type: str | None = None
    name: str | None = None
    maxDurationMinutes: int | None = None  # noqa: N815


@dataclass(frozen=True)
class Started:
    body: dict
    replayed: bool


def start_session(
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    wanted: DeviceWanted,
    render: Callable[[object], dict],
    idempotency_key: str | None = None,
) -> Started:
    """Lease a free matching device to the organization; `render` shapes the answer, which is
    kept for replay under `idempotency_key`."""
    request_hash = hashlib.sha256(json.dumps(asdict(wanted), sort_keys=True).encode()).hexdigest()
    for attempt in range(_ATTEMPTS):
        try:
            with db.writing() as session:
                conn = session.connection()
                lock_organizations(conn, [organization_id])
                if idempotency_key is not None:
                    stored = _stored_answer(conn, organization_id, idempotency_key, request_hash)
                    if stored is not None:
                        return Started(stored, replayed=True)
                body = render(_lease(conn, organization_id, user_id, wanted))
                if idempotency_key is not None:
                    conn.execute(
                        IdempotencyRecord.__table__.insert().values(
                            organization_id=organization_id, key=idempotency_key, request_hash=request_hash,
                            response_body=json.dumps(body), created_at=utcnow(),
                        )
                    )
                return Started(body, replayed=False)
        except IntegrityError:
            # Another writer took the device (or the key) first: look again.
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def release_session(organization_id: uuid.UUID, session_id: uuid.UUID) -> object:
    """End a live session now (or at its expiry, if that has passed); a released one is left as it is."""
    with db.writing() as session:
        conn = session.connection()
        lease = conn.execute(
            select(SessionRecord.created_at, SessionRecord.released_at, SessionRecord.expires_at).where(
                SessionRecord.id == session_id, SessionRecord.organization_id == organization_id
            )
        ).first()
        if lease is not None and lease.released_at is None:
            released_at = max(min(utcnow(), lease.expires_at), lease.created_at)
            conn.execute(
                update(SessionRecord)
                .where(SessionRecord.id == session_id, SessionRecord.released_at.is_(None))
                .values(released_at=released_at)
            )
        return get_session(organization_id, session_id, conn)  # NotFound when there was none


def release_expired(now: datetime | None = None) -> int:
    """Release every live session past its expiry, at its expiry; returns how many."""
    with db.writing() as session:
        return _release_expired(session.connection(), now or utcnow())


def _release_expired(conn: Connection, now: datetime, device_id: uuid.UUID | None = None) -> int:
    query = (
        update(SessionRecord)
        .where(SessionRecord.released_at.is_(None), SessionRecord.expires_at <= now)
        .values(released_at=SessionRecord.expires_at)
    )
    if device_id is not None:
        query = query.where(SessionRecord.device_id == device_id)
    return conn.execute(query).rowcount


def _stored_answer(conn: Connection, organization_id: uuid.UUID, key: str, request_hash: str) -> dict | None:
    record = conn.execute(
        select(IdempotencyRecord.request_hash, IdempotencyRecord.response_body, IdempotencyRecord.created_at).where(
            IdempotencyRecord.organization_id == organization_id, IdempotencyRecord.key == key
        )
    ).first()
    if record is None:
        return None
    if record.created_at <= utcnow() - IDEMPOTENCY_WINDOW:
        conn.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.organization_id == organization_id, IdempotencyRecord.key == key
            )
        )
        return None
    if record.request_hash != request_hash:
        raise Unprocessable(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body in the last 24 hours.",
        )
    return json.loads(record.response_body)


def _lease(conn: Connection, organization_id: uuid.UUID, user_id: uuid.UUID, wanted: DeviceWanted):
    config = settings.current()
    now = utcnow()
    live = conn.execute(
        select(func.count()).where(
            SessionRecord.organization_id == organization_id,
            SessionRecord.released_at.is_(None),
            SessionRecord.expires_at > now,
        )
    ).scalar_one()
    if live >= config.max_live_sessions_per_organization:
        raise Conflict(
            "concurrency_limit_reached",
            f"The organization already has its maximum of {config.max_live_sessions_per_organization} "
            "live sessions; release one first.",
        )
    device_id = _pick_free_device(conn, wanted, now)
    _release_expired(conn, now, device_id)  # an expired lease still holding it ends now
    minutes = min(wanted.maxDurationMinutes or config.default_session_minutes, config.max_session_minutes)
    new = NewSession(organization_id, user_id, device_id, duration=timedelta(minutes=minutes))
    (session_id,) = insert_sessions([new], conn=conn)
    return get_session(organization_id, session_id, conn)


def _pick_free_device(conn: Connection, wanted: DeviceWanted, now: datetime) -> uuid.UUID:
    matching = [Device.platform == wanted.platform]
    for column, value in ((Device.os_version, wanted.osVersion), (Device.type, wanted.type), (Device.name, wanted.name)):
        if value is not None:
            matching.append(column == value)
    held = exists().where(
        SessionRecord.device_id == Device.id, SessionRecord.released_at.is_(None), SessionRecord.expires_at > now
    )
    query = select(Device.id).where(*matching, Device.disabled.is_(False), ~held).order_by(func.random()).limit(1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=Device, skip_locked=True)
    device_id = conn.execute(query).scalar()
    if device_id is not None:
        return device_id
    if conn.execute(select(exists().where(and_(*matching)))).scalar():
        raise Conflict("no_device_available", "Every device matching the request is in use or offline; retry later.")
    described = ", ".join(f"{field} {value!r}" for field, value in asdict(wanted).items()
                          if value is not None and field != "maxDurationMinutes")
    raise Unprocessable("no_matching_device", f"No device of the fleet matches {described}.")
