"""The outbox references the event log: a delivery keeps its event's id, not a copy of its body;
every attempt sends the body built from the event's row; and a delivery whose event has left
the log (its retention) fails with `event_expired`, without a request and without a retry."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from sessions_api.core import db
from sessions_api.core.timestamps import utcnow
from sessions_api.models import events
from sessions_api.models.tables import DeliveryStatus, EventRecord, WebhookDelivery
from tests.support.api import API, SESSIONS, WEBHOOK_ENDPOINTS, webhook_path
from tests.support.receiver import receiving

RETRY_SECONDS = 1.5


@pytest.fixture
def settings(settings):
    return settings.replace(
        webhook_allow_private=True,
        webhook_poll_seconds=0.05,
        webhook_retry_schedule=f"{RETRY_SECONDS}s,{RETRY_SECONDS}s",
    )


def _first_fails(path: str, n: int) -> tuple[int, float]:
    return (503 if n == 1 else 204), 0.0


def _attempts(client, admin, team, endpoint_id, count: int) -> list[dict]:
    """The endpoint's attempts once there are `count` (bounded wait), newest first."""
    deadline = time.monotonic() + 10 * RETRY_SECONDS
    while True:
        data = client.get(webhook_path(endpoint_id, "deliveries"), headers=admin.acting_on(team.id)).json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_every_attempt_sends_the_event_of_the_log_which_the_outbox_does_not_copy(client, world, team, admin):
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    headers = admin.acting_on(team.id)
    with receiving(_first_fails) as receiver:
        body = {"url": receiver.url("/hook"), "events": ["session.started"]}
        endpoint = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
        session = client.post(SESSIONS, json={"platform": "ios"}, headers=headers).json()
        first, second = receiver.wait_for("/hook", 2, timeout=10 * RETRY_SECONDS)
    (logged,) = client.get(f"{API}/events", params={"type": "session.started"}, headers=headers).json()["data"]
    with db.reading() as conn:
        delivery = conn.execute(select(WebhookDelivery.event_id, WebhookDelivery.payload)).one()
        row_id = conn.execute(select(EventRecord.id).where(EventRecord.type == "session.started")).scalar_one()
    assert delivery.payload is None and delivery.event_id == row_id  # a reference, not a copy
    assert first.body == second.body and first.webhook_id == second.webhook_id == str(row_id)
    assert json.loads(first.body) == {
        "type": "session.started",
        "timestamp": session["createdAt"],
        "data": logged["data"],
    }
    assert first.verifies_with(endpoint["secret"])


def test_a_delivery_whose_event_left_the_log_fails_without_a_request(client, world, team, admin):
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    headers = admin.acting_on(team.id)
    with receiving(lambda path, n: (503, 0.0)) as receiver:
        body = {"url": receiver.url("/hook"), "events": ["session.started"]}
        endpoint = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
        client.post(SESSIONS, json={"platform": "ios"}, headers=headers)
        receiver.wait_for("/hook", 1)
        # The retention has passed for it before its retry is due.
        assert events.sweep_expired(now=utcnow() + timedelta(days=365)) >= 1
        attempts = _attempts(client, admin, team, endpoint["id"], 2)
        assert len(receiver.at("/hook")) == 1  # the retry made no request
    assert [(a["attempt"], a["error"], a["responseStatus"]) for a in attempts] == [
        (2, "event_expired", None),
        (1, "http_status", 503),
    ]
    with db.reading() as conn:  # ... and ended the delivery, though the schedule had one more retry
        assert conn.execute(select(WebhookDelivery.status)).scalar_one() == DeliveryStatus.failed
    endpoint_now = client.get(webhook_path(endpoint["id"]), headers=headers).json()
    assert endpoint_now["enabled"] is True
    assert uuid.UUID(attempts[0]["event"]["id"])  # still named by its event's id
