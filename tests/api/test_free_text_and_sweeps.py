"""Smaller findings of the third hardening round: free text in requests refuses controls and
bidirectional controls (sent as an attacker would, as JSON escapes), a queued start no device
could ever serve is refused at once, and what has ended is swept (idempotency records past
their 24 hours, a rotated secret past its overlap)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from sessions_api.core import db
from sessions_api.core.timestamps import utcnow
from sessions_api.models import IdempotencyRecord, Role, WebhookEndpoint, devices, leases, webhooks
from sessions_api.models.errors import InvalidInput
from tests.support.api import (
    SESSIONS,
    UNREACHABLE_HOOK,
    WEBHOOK_ENDPOINTS,
    assert_error,
    invitations_path,
    webhook_path,
)

BIDI_OVERRIDE = "\\u202e"  # RIGHT-TO-LEFT OVERRIDE, as a JSON escape: the body itself is plain ASCII


@pytest.fixture
def session(client, admin, team, world):
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    started = client.post(SESSIONS, json={"platform": "ios"}, headers=admin.acting_on(team.id))
    assert started.status_code == 201
    return started.json()


def _patch_raw(client, admin, team, session_id, raw: str):
    headers = {**admin.acting_on(team.id), "Content-Type": "application/json"}
    return client.patch(f"{SESSIONS}/{session_id}", content=raw.encode(), headers=headers)


@pytest.mark.parametrize(
    "raw",
    [
        '{"resultReason": "flaky' + BIDI_OVERRIDE + 'test"}',
        '{"resultReason": "bell\\u0007"}',
        '{"resultReason": "next line\\u0085"}',
        '{"metadata": {"ci": "x' + BIDI_OVERRIDE + '"}}',
        '{"metadata": {"ci\\nkey": "value"}}',
        '{"metadata": {"c' + BIDI_OVERRIDE + 'i": "value"}}',
    ],
)
def test_free_text_with_controls_or_bidirectional_controls_is_refused(client, admin, team, session, raw):
    assert_error(_patch_raw(client, admin, team, session["id"], raw), 400, "invalid_request")


def test_multi_line_free_text_keeps_its_tabs_and_line_breaks(client, admin, team, session):
    answer = _patch_raw(client, admin, team, session["id"], '{"resultReason": "step 1\\tok\\nstep 2\\tfailed"}')
    assert answer.status_code == 200, answer.text
    assert answer.json()["resultReason"] == "step 1\tok\nstep 2\tfailed"


def test_webhook_descriptions_and_invitation_emails_refuse_bidirectional_controls(client, admin, team):
    headers = {**admin.acting_on(team.id), "Content-Type": "application/json"}
    raw = (
        '{"url": "' + UNREACHABLE_HOOK + '", "events": ["session.started"], "description": "pay' + BIDI_OVERRIDE + '"}'
    )
    assert_error(client.post(WEBHOOK_ENDPOINTS, content=raw.encode(), headers=headers), 400, "invalid_request")
    raw = '{"email": "admin' + BIDI_OVERRIDE + '@example.com", "role": "admin"}'
    invited = client.post(invitations_path(team.id), content=raw.encode(), headers=headers)
    assert_error(invited, 400, "invalid_request")


def test_the_operator_cannot_add_a_device_no_start_could_name(app):
    with pytest.raises(InvalidInput, match="bidirectional"):
        devices.add_device("ios", "simulator", "iPhone\u202e16", "18.2")


def test_a_queued_start_no_device_could_ever_serve_is_refused_even_when_others_wait(client, world, team, admin):
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=admin.acting_on(team.id)).status_code == 201
    queued = {"platform": "ios", "queue": {"maxWaitSeconds": 600}}
    assert client.post(SESSIONS, json=queued, headers=admin.acting_on(team.id)).status_code == 202  # one waits
    never = {**queued, "osVersion": "1.0"}
    refused = client.post(SESSIONS, json=never, headers=admin.acting_on(team.id))
    assert "osVersion '1.0'" in assert_error(refused, 422, "no_matching_device")["error"]["message"]


def _idempotency_records() -> int:
    with db.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one())


def test_idempotency_records_are_swept_after_their_24_hours(client, world, team):
    writer = world.member(of=[(team, Role.readwrite)])
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    headers = {**writer.acting_on(team.id), "Idempotency-Key": "nightly-1"}
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=headers).status_code == 201
    assert _idempotency_records() == 1
    assert leases.sweep_idempotency_records(now=utcnow() + timedelta(hours=23)) == 0
    assert leases.sweep_idempotency_records(now=utcnow() + timedelta(hours=24, seconds=1)) == 1
    assert _idempotency_records() == 0


@pytest.fixture
def settings(settings):
    return settings.replace(webhook_rotation_overlap_seconds=60.0)


def test_a_rotated_secret_is_erased_when_its_overlap_ends(client, admin, team):
    headers = admin.acting_on(team.id)
    endpoint = client.post(WEBHOOK_ENDPOINTS, json={"url": UNREACHABLE_HOOK, "events": ["session.started"]},
                           headers=headers).json()  # fmt: skip
    assert client.post(webhook_path(endpoint["id"], "rotate-secret"), headers=headers).status_code == 200

    def previous() -> object:
        with db.reading() as conn:
            return conn.execute(select(WebhookEndpoint.previous_secret)).scalar_one()

    assert webhooks.erase_ended_rotations(now=utcnow()) == 0 and previous() is not None  # still signs
    assert webhooks.erase_ended_rotations(now=utcnow() + timedelta(seconds=61)) == 1
    assert previous() is None
