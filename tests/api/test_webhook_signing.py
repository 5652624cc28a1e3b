"""Signatures across a secret's rotation, and an endpoint disabled after failing for long
enough: through the app (its webhook sender included) to a receiver on 127.0.0.1, which this
module's settings allow, with a rotation overlap and a failure window of about a second."""

from __future__ import annotations

import time

import pytest

from sessions_api.core.settings import Settings
from tests.support.api import AUDIT_EVENTS, SESSIONS, WEBHOOK_ENDPOINTS, webhook_path
from tests.support.live_server import free_port
from tests.support.receiver import receiving

OVERLAP_SECONDS = 1.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        validate_responses=True,
        webhook_allow_private=True,
        webhook_poll_seconds=0.05,
        webhook_retry_schedule="50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms",
        webhook_timeout_seconds=1,
        webhook_rotation_overlap_seconds=OVERLAP_SECONDS,
        webhook_disable_after_seconds=0.3,
    )


def test_deliveries_verify_with_either_secret_during_the_overlap_and_only_the_new_one_after(client, team, admin):
    headers = admin.acting_on(team.id)
    with receiving() as receiver:
        body = {"url": receiver.url("/hook"), "events": ["session.started"]}
        old = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
        before = client.post(webhook_path(old["id"], "test"), headers=headers).json()
        new = client.post(webhook_path(old["id"], "rotate-secret"), headers=headers).json()
        during = client.post(webhook_path(old["id"], "test"), headers=headers).json()
        time.sleep(OVERLAP_SECONDS + 0.1)
        after = client.post(webhook_path(old["id"], "test"), headers=headers).json()
        first, second, third = receiver.wait_for("/hook", 3)

    assert [attempt["responseStatus"] for attempt in (before, during, after)] == [204, 204, 204]
    assert first.verifies_with(old["secret"]) and not first.verifies_with(new["secret"])
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    assert second.verifies_with(old["secret"]) and second.verifies_with(new["secret"])
    assert third.verifies_with(new["secret"]) and not third.verifies_with(old["secret"])
    assert len({first.webhook_id, second.webhook_id, third.webhook_id}) == 3


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [((204, 0.0), 204, None), ((500, 0.0), 500, "http_status"), ((404, 0.0), 404, "http_status")],
)
def test_an_attempt_records_the_answer_or_a_reason_code(client, team, admin, answer, status, error):
    headers = admin.acting_on(team.id)
    with receiving(lambda _path, _n: answer) as receiver:
        body = {"url": receiver.url("/hook"), "events": ["session.started"]}
        endpoint = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
        attempt = client.post(webhook_path(endpoint["id"], "test"), headers=headers).json()
    assert (attempt["responseStatus"], attempt["error"], attempt["succeeded"]) == (status, error, error is None)


def test_a_name_that_does_not_resolve_is_a_dns_failure(client, team, admin):
    headers = admin.acting_on(team.id)
    body = {"url": "http://hooks.example.invalid/hook", "events": ["session.started"]}
    endpoint = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
    attempt = client.post(webhook_path(endpoint["id"], "test"), headers=headers).json()
    assert attempt["responseStatus"] is None and attempt["error"] == "dns_failure"


def test_an_endpoint_that_only_fails_for_long_enough_is_disabled_and_the_audit_log_says_so(client, world, team, admin):
    headers = admin.acting_on(team.id)
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    nobody = f"http://127.0.0.1:{free_port()}/gone"  # nothing listens: every attempt fails
    endpoint = client.post(WEBHOOK_ENDPOINTS, json={"url": nobody, "events": ["session.started"]}, headers=headers)
    endpoint = endpoint.json()
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=headers).status_code == 201
    deadline = time.monotonic() + 20
    while client.get(webhook_path(endpoint["id"]), headers=headers).json()["enabled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    attempts = client.get(webhook_path(endpoint["id"], "deliveries"), headers=headers).json()["data"]
    events = client.get(AUDIT_EVENTS, params={"type": "webhook_endpoint.disabled"}, headers=headers).json()["data"]

    assert client.get(webhook_path(endpoint["id"]), headers=headers).json()["enabled"] is False
    assert attempts and not any(attempt["succeeded"] for attempt in attempts)
    # Each failure says why as a reason code, never the operating system's words or an address.
    assert {attempt["error"] for attempt in attempts} == {"connection_refused"}
    (disabled,) = events
    assert disabled["origin"] == "system" and disabled["actor"] is None
    assert disabled["target"] == {"kind": "webhook_endpoint", "id": endpoint["id"]}
    assert disabled["data"]["before"] == {"enabled": True} and disabled["data"]["after"]["enabled"] is False
    # Disabled: the delivery waits, no attempt is made any more.
    time.sleep(0.3)
    later = client.get(webhook_path(endpoint["id"], "deliveries"), headers=headers).json()["data"]
    assert len(later) == len(attempts)
