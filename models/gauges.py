"""What the metrics read from the database at each scrape: the state of the fleet, sessions, the
queue of starts, the webhooks' outbox and the bytes artifacts hold.

Read at scrape time, not counted by each process, so that every worker reports the same,
exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, literal, select
from sqlmodel import col

from sessions_api.core import db
from sessions_api.models.devices import DEVICE_STATE, DEVICE_STATES
from sessions_api.models.tables import (
    Device,
    Organization,
    SessionRecord,
    SessionRequest,
    SessionRequestStatus,
    WebhookDelivery,
)

# The classes of organizations the queue depth is reported by (never an organization's id):
# those with an operator's plan, those created through the API (the self-service plan), and
# every other one (the default plan).
ORGANIZATION_CLASSES = ("custom", "self_service", "default")


@dataclass(frozen=True)
class Counts:
    live_sessions: int
    devices_by_state: dict[str, int]
    webhook_deliveries_pending: int
    queued_by_class: dict[str, int]
    artifact_stored_bytes: int


def current_counts() -> Counts:
    with db.reading() as conn:
        live = conn.execute(
            select(func.count()).select_from(SessionRecord).where(col(SessionRecord.released_at).is_(None))
        ).scalar_one()
        by_state = dict.fromkeys(DEVICE_STATES, 0)
        for state, count in conn.execute(select(DEVICE_STATE, func.count(col(Device.id))).group_by(DEVICE_STATE)):
            by_state[state] = count
        pending = conn.execute(
            select(func.count()).select_from(WebhookDelivery).where(col(WebhookDelivery.status) == "pending")
        ).scalar_one()
        queued_by_class = dict.fromkeys(ORGANIZATION_CLASSES, 0)
        for kind, count in conn.execute(
            select(_ORGANIZATION_CLASS, func.count())
            .select_from(SessionRequest)
            .join(Organization, col(Organization.id) == col(SessionRequest.organization_id))
            .where(col(SessionRequest.status) == SessionRequestStatus.queued)
            .group_by(_ORGANIZATION_CLASS)
        ):
            queued_by_class[kind] = count
        stored = conn.execute(select(func.coalesce(func.sum(col(Organization.stored_bytes)), 0))).scalar_one()
    return Counts(
        live_sessions=live,
        devices_by_state=by_state,
        webhook_deliveries_pending=pending,
        queued_by_class=queued_by_class,
        artifact_stored_bytes=int(stored),
    )


_ORGANIZATION_CLASS = case(
    (
        col(Organization.max_live_sessions).is_not(None) | col(Organization.max_queued_sessions).is_not(None),
        literal("custom"),
    ),
    (col(Organization.created_by_user_id).is_not(None), literal("self_service")),
    else_=literal("default"),
)
