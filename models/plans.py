"""Plans: how many live sessions an organization may hold and how many starts it may have
queued (models.queue), and the live view of its concurrency.

An organization's plan is what the operator set (`sessions-api org plan`), or else the default
of its kind: organizations created through the API get the self-service plan
(`SESSIONS_API_SELF_SERVICE_MAX_LIVE_SESSIONS`), every other one the default plan
(`SESSIONS_API_MAX_LIVE_SESSIONS`). The allocator (models.leases) and the live view read the
same rows with the same conditions, so the view never contradicts a refused start.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Exists, bindparam, case, exists, func, literal, select, update
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.prepared import Prepared
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit
from sessions_api.models.errors import NO_SUCH_ORGANIZATION, NotFound
from sessions_api.models.tables import (
    AuditEventType,
    Device,
    Organization,
    SessionRecord,
    SessionRequest,
    SessionRequestStatus,
)
from sessions_api.models.types import UTCDateTime


@dataclass(frozen=True)
class Plan:
    max_live_sessions: int
    max_queued_sessions: int
    max_storage_bytes: int
    artifact_retention_days: float


def max_live_sessions_column() -> ColumnElement[int]:
    """An organization's most live sessions, as a column of a query of organizations."""
    config = settings.current()
    return _planned(
        col(Organization.max_live_sessions), config.self_service_max_live_sessions, config.max_live_sessions
    )


def max_queued_sessions_column() -> ColumnElement[int]:
    """An organization's most queued requests, as a column of a query of organizations."""
    config = settings.current()
    return _planned(
        col(Organization.max_queued_sessions), config.self_service_max_queued_sessions, config.max_queued_sessions
    )


def max_storage_bytes_column() -> ColumnElement[int]:
    """The most bytes an organization's artifacts may hold, as a column of a query of organizations."""
    config = settings.current()
    return _planned(
        col(Organization.max_storage_bytes), config.self_service_max_storage_bytes, config.max_storage_bytes
    )


def artifact_retention_days_column() -> ColumnElement[float]:
    """How long an organization's artifacts are kept (days), as a column of a query of organizations."""
    return func.coalesce(col(Organization.artifact_retention_days), settings.current().artifact_retention_days)


def _planned(operator_set: Any, self_service: int, default: int) -> ColumnElement[int]:
    of_its_kind = case(
        (col(Organization.created_by_user_id).is_not(None), literal(self_service)), else_=literal(default)
    )
    return func.coalesce(operator_set, of_its_kind)


# plan_of's read: the operator's limits and the organization's kind, whose defaults apply in
# Python as _planned applies them in SQL (the same rule: a set limit, else its kind's default).
_PLAN_ROW = Prepared(
    select(
        col(Organization.max_live_sessions),
        col(Organization.max_queued_sessions),
        col(Organization.max_storage_bytes),
        col(Organization.artifact_retention_days),
        col(Organization.created_by_user_id).is_not(None).label("self_service"),
    ).where(col(Organization.id) == bindparam("organization_id"))
)
_LIVE_SESSIONS = Prepared(
    select(func.count()).where(
        col(SessionRecord.organization_id) == bindparam("organization_id"),
        col(SessionRecord.released_at).is_(None),
        col(SessionRecord.expires_at) > bindparam("now", type_=UTCDateTime()),
    )
)


def plan_of(*, conn: Connection, organization_id: uuid.UUID) -> Plan:
    found = _PLAN_ROW.first(conn, {"organization_id": organization_id})
    if found is None:
        raise NotFound(NO_SUCH_ORGANIZATION)
    config = settings.current()

    def planned(operator_set: int | None, self_service: int, default: int) -> int:
        if operator_set is not None:
            return int(operator_set)
        return self_service if found.self_service else default

    return Plan(
        planned(found.max_live_sessions, config.self_service_max_live_sessions, config.max_live_sessions),
        planned(found.max_queued_sessions, config.self_service_max_queued_sessions, config.max_queued_sessions),
        planned(found.max_storage_bytes, config.self_service_max_storage_bytes, config.max_storage_bytes),
        float(
            found.artifact_retention_days
            if found.artifact_retention_days is not None
            else config.artifact_retention_days
        ),
    )


def max_live_sessions(*, conn: Connection, organization_id: uuid.UUID) -> int:
    return plan_of(conn=conn, organization_id=organization_id).max_live_sessions


def live_sessions(*, conn: Connection, organization_id: uuid.UUID, now: datetime) -> int:
    """What the plan counts: the organization's sessions that hold a device now (_holding)."""
    return int(_LIVE_SESSIONS.scalar(conn, {"organization_id": organization_id, "now": now}))


def live_against_plans(
    *, conn: Connection, organization_ids: Collection[uuid.UUID], now: datetime
) -> dict[uuid.UUID, tuple[int, int]]:
    """Each organization's live sessions and the most its plan allows, counted as the allocator
    counts them (what the queue's decisions read)."""
    live = dict(
        conn.execute(
            select(col(SessionRecord.organization_id), func.count())
            .where(col(SessionRecord.organization_id).in_(organization_ids), _holding(now))
            .group_by(col(SessionRecord.organization_id))
        ).all()
    )
    limits = conn.execute(
        select(col(Organization.id), max_live_sessions_column()).where(col(Organization.id).in_(organization_ids))
    ).all()
    return {organization_id: (int(live.get(organization_id, 0)), int(most)) for organization_id, most in limits}


def device_held(now: datetime | ColumnElement[datetime]) -> Exists:
    """The device of the query is held by a live session (one past its expiry no longer holds it)."""
    return exists().where(col(SessionRecord.device_id) == col(Device.id), _holding(now))


def _holding(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return col(SessionRecord.released_at).is_(None) & (col(SessionRecord.expires_at) > now)


# A limit set_plan() is not given: it stays as it is.
UNCHANGED: Any = object()


# The plan's columns, by their names in the API (the audit log's before and after).
_PLAN_COLUMNS = {
    "maxLiveSessions": "max_live_sessions",
    "maxQueuedSessions": "max_queued_sessions",
    "maxStorageBytes": "max_storage_bytes",
    "artifactRetentionDays": "artifact_retention_days",
}


def set_plan(
    organization_id: uuid.UUID,
    max_live: int | None = UNCHANGED,
    max_queued: int | None = UNCHANGED,
    max_storage_bytes: int | None = UNCHANGED,
    artifact_retention_days: float | None = UNCHANGED,
) -> Plan:
    """The operator's: give the organization its own limits (None: back to its kind's default;
    a limit not given stays as it is); audited. Returns the plan now in force."""
    given = (max_live, max_queued, max_storage_bytes, artifact_retention_days)
    changes = {
        column: value for column, value in zip(_PLAN_COLUMNS.values(), given, strict=True) if value is not UNCHANGED
    }
    with db.writing() as conn:
        before = plan_of(conn=conn, organization_id=organization_id)
        if changes:
            conn.execute(update(Organization).where(col(Organization.id) == organization_id).values(**changes))
        after = plan_of(conn=conn, organization_id=organization_id)
        changed = audit.Event(
            organization_id,
            AuditEventType.organization_plan_changed,
            audit.OPERATOR,
            audit.TargetKind.organization,
            organization_id,
            before=_shown(before),
            after=_shown(after),
        )
        audit.record(conn=conn, events=[changed])
        return after


def _shown(plan: Plan) -> dict[str, int | float]:
    """A plan as the audit log shows it, in the API's names."""
    return {name: getattr(plan, column) for name, column in _PLAN_COLUMNS.items()}


@dataclass(frozen=True)
class PlatformConcurrency:
    platform: str
    live: int  # the organization's live sessions on this platform
    queued: int  # the organization's requests waiting for a device of this platform
    available: int  # the fleet's devices of this platform a start could lease now


@dataclass(frozen=True)
class Concurrency:
    live: int
    queued: int
    plan: Plan
    by_platform: list[PlatformConcurrency]


def concurrency(organization_id: uuid.UUID) -> Concurrency:
    """The live view: the organization's live sessions and queued requests against its plan,
    and per platform of the fleet its live sessions, its queued requests and the devices free
    for it, from one snapshot's rows."""
    now = utcnow()
    with db.reading(snapshot=True) as conn:
        platforms = conn.execute(
            select(
                col(Device.platform),
                func.count().filter(col(Device.disabled).is_(False) & ~device_held(now)),
            )
            .group_by(col(Device.platform))
            .order_by(col(Device.platform))
        ).all()
        live = dict(
            conn.execute(
                select(col(SessionRecord.platform), func.count())
                .where(col(SessionRecord.organization_id) == organization_id, _holding(now))
                .group_by(col(SessionRecord.platform))
            ).all()
        )
        queued = dict(
            conn.execute(
                select(col(SessionRequest.platform), func.count())
                .where(
                    col(SessionRequest.organization_id) == organization_id,
                    col(SessionRequest.status) == SessionRequestStatus.queued,
                )
                .group_by(col(SessionRequest.platform))
            ).all()
        )
        plan = plan_of(conn=conn, organization_id=organization_id)
    by_platform = [
        PlatformConcurrency(name, int(live.get(name, 0)), int(queued.get(name, 0)), int(free))
        for name, free in platforms
    ]
    return Concurrency(sum(live.values()), sum(queued.values()), plan, by_platform)
