"""No tenant holds up another's webhooks: claims go round-robin over the endpoints with due
deliveries, so one organization's backlog to a slow receiver does not hide another's event;
and a signing secret this server cannot unseal fails only its own endpoint's deliveries."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from starlette.testclient import TestClient

from sessions_api.core import db
from sessions_api.models import Role, webhooks
from sessions_api.web.app import create_app
from tests.support.api import SESSIONS, WEBHOOK_ENDPOINTS, scrape, webhook_path
from tests.support.receiver import receiving

BACKLOG = 2000
SLOW_SECONDS = 1.0
# The bound: the other organization's one event arrives within this (it would wait for
# the whole backlog, BACKLOG / concurrency seconds, if claims went oldest first).
ARRIVES_WITHIN_SECONDS = 2.0
SERVER_KEY, OTHER_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def settings(settings):
    return settings.replace(
        webhook_allow_private=True, webhook_poll_seconds=0.05, webhook_timeout_seconds=5, secret_keys=SERVER_KEY
    )


def _answer(path: str, _n: int) -> tuple[int, float]:
    return 204, SLOW_SECONDS if path == "/busy" else 0.0


def test_a_backlog_to_a_slow_receiver_does_not_hide_another_organizations_event(client, world, team, admin):
    other = world.organization("Other")
    other_admin = world.member(of=[(other, Role.admin)])
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    with receiving(_answer) as receiver:
        busy = {"url": receiver.url("/busy"), "events": ["session.queued"]}
        assert client.post(WEBHOOK_ENDPOINTS, json=busy, headers=admin.acting_on(team.id)).status_code == 201
        backlog = [
            webhooks.Document(team.id, "session.queued", "2026-12-07T00:00:00.000000Z", {"n": n})
            for n in range(BACKLOG)
        ]
        with db.writing() as conn:  # the outbox, as the queue writes it
            webhooks.enqueue_documents(conn=conn, events=backlog)
        receiver.wait_for("/busy", 1, timeout=10)  # the backlog is being worked through
        quick = {"url": receiver.url("/quick"), "events": ["session.started"]}
        headers = other_admin.acting_on(other.id)
        assert client.post(WEBHOOK_ENDPOINTS, json=quick, headers=headers).status_code == 201
        assert client.post(SESSIONS, json={"platform": "ios"}, headers=headers).status_code == 201
        (delivered,) = receiver.wait_for("/quick", 1, timeout=ARRIVES_WITHIN_SECONDS)
        assert b"session.started" in delivered.body
        assert len(receiver.at("/busy")) < BACKLOG / 10  # the backlog was still there


def test_a_secret_this_server_cannot_unseal_fails_only_its_endpoint(client, settings, world, team, admin, caplog):
    other = world.organization("Other")
    other_admin = world.member(of=[(other, Role.admin)])
    for n in range(2):
        world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2")
    with receiving() as receiver:
        # Sealed under a key this server was not given (a rotation run before it knew the key).
        with TestClient(create_app(settings.replace(secret_keys=OTHER_KEY))) as elsewhere:
            body = {"url": receiver.url("/unreadable"), "events": ["session.started"]}
            unreadable = elsewhere.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id)).json()
        body = {"url": receiver.url("/readable"), "events": ["session.started"]}
        readable = client.post(WEBHOOK_ENDPOINTS, json=body, headers=other_admin.acting_on(other.id)).json()
        assert client.get("/readyz").json() == {"status": "ready", "unreadableSecrets": 1}
        with caplog.at_level(logging.ERROR):
            for member, organization in ((admin, team), (other_admin, other)):
                started = client.post(SESSIONS, json={"platform": "ios"}, headers=member.acting_on(organization.id))
                assert started.status_code == 201
            receiver.wait_for("/readable", 1)
            tested = client.post(webhook_path(unreadable["id"], "test"), headers=admin.acting_on(team.id)).json()
    assert (tested["succeeded"], tested["error"], tested["responseStatus"]) == (False, "secret_unreadable", None)
    assert receiver.at("/unreadable") == []
    attempts = client.get(webhook_path(unreadable["id"], "deliveries"), headers=admin.acting_on(team.id)).json()
    assert {attempt["error"] for attempt in attempts["data"]} == {"secret_unreadable"}
    assert readable["id"] not in caplog.text
    named = [record for record in caplog.records if unreadable["id"] in record.getMessage()]
    assert named and all(record.levelno == logging.ERROR for record in named)
    assert unreadable["secret"] not in caplog.text
    assert scrape(client)[("sessions_api_webhook_secrets_unreadable_total", ())] >= 2
