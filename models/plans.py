"""Plans: how many live sessions an organization may hold, and the live view of its concurrency.

An organization's plan is what the operator set (`sessions-api org plan`), or else the default
of its kind: organizations created through the API get the self-service plan
(`SESSIONS_API_SELF_SERVICE_MAX_LIVE_SESSIONS`), every other one the default plan
(`SESSIONS_API_MAX_LIVE_SESSIONS`). The allocator (models.leases) and the live view read the
same rows with the same conditions, so the view never contradicts a refused start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Exists, case, exists, func, literal, select, update
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit
from sessions_api.models.errors import NO_SUCH_ORGANIZATION, NotFound
from sessions_api.models.tables import AuditEventType, Device, Organization, SessionRecord


def max_live_sessions_column() -> ColumnElement[int]:
    """An organization's plan, as a column of a query of organizations."""
    config = settings.current()
    default = case(
        (col(Organization.created_by_user_id).is_not(None), literal(config.self_service_max_live_sessions)),
        else_=literal(config.max_live_sessions),
    )
    return func.coalesce(col(Organization.max_live_sessions), default)


def max_live_sessions(*, conn: Connection, organization_id: uuid.UUID) -> int:
    found = conn.execute(
        select(max_live_sessions_column()).where(col(Organization.id) == organization_id)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(NO_SUCH_ORGANIZATION)
    return int(found)


def live_sessions(*, conn: Connection, organization_id: uuid.UUID, now: datetime) -> int:
    """What the plan counts: the organization's sessions that hold a device now."""
    return int(
        conn.execute(
            select(func.count()).where(col(SessionRecord.organization_id) == organization_id, _holding(now))
        ).scalar_one()
    )


def device_held(now: datetime) -> Exists:
    """The device of the query is held by a live session (one past its expiry no longer holds it)."""
    return exists().where(col(SessionRecord.device_id) == col(Device.id), _holding(now))


def _holding(now: datetime) -> ColumnElement[bool]:
    return col(SessionRecord.released_at).is_(None) & (col(SessionRecord.expires_at) > now)


def set_plan(organization_id: uuid.UUID, max_live: int | None) -> int:
    """The operator's: give the organization its own plan (None: back to its kind's default);
    audited. Returns the plan now in force."""
    with db.writing() as conn:
        before = max_live_sessions(conn=conn, organization_id=organization_id)
        conn.execute(
            update(Organization).where(col(Organization.id) == organization_id).values(max_live_sessions=max_live)
        )
        after = max_live_sessions(conn=conn, organization_id=organization_id)
        changed = audit.Event(
            organization_id,
            AuditEventType.organization_plan_changed,
            audit.OPERATOR,
            audit.TargetKind.organization,
            organization_id,
            before={"maxLiveSessions": before},
            after={"maxLiveSessions": after},
        )
        audit.record(conn=conn, events=[changed])
        return after


@dataclass(frozen=True)
class PlatformConcurrency:
    platform: str
    live: int  # the organization's live sessions on this platform
    available: int  # the fleet's devices of this platform a start could lease now


@dataclass(frozen=True)
class Concurrency:
    live: int
    max_live_sessions: int
    by_platform: list[PlatformConcurrency]


def concurrency(organization_id: uuid.UUID) -> Concurrency:
    """The live view: the organization's live sessions against its plan, and per platform of
    the fleet its live sessions and the devices free for it, from one snapshot's rows."""
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
        plan = max_live_sessions(conn=conn, organization_id=organization_id)
    by_platform = [PlatformConcurrency(name, int(live.get(name, 0)), int(free)) for name, free in platforms]
    return Concurrency(sum(live.values()), plan, by_platform)
