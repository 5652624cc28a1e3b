"""What the metrics read from the database at each scrape: the state of the fleet, sessions and
the webhooks' outbox.

Read at scrape time, not counted by each process, so that every worker reports the same,
exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import col

from sessions_api.core import db
from sessions_api.models.devices import DEVICE_STATE, DEVICE_STATES
from sessions_api.models.tables import Device, SessionRecord, WebhookDelivery


@dataclass(frozen=True)
class Counts:
    live_sessions: int
    devices_by_state: dict[str, int]
    webhook_deliveries_pending: int


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
    return Counts(live_sessions=live, devices_by_state=by_state, webhook_deliveries_pending=pending)
