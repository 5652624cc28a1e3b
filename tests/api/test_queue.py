"""Queued starts: a start with `queue` that cannot lease now waits as a session request, is
served oldest first (fairly across organizations) when a device frees up, times out at its
deadline, can be cancelled and long-polled, and the counters never contradict an answer."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest

from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.models import Role, devices, leases, plans, queue_serving, sessions
from sessions_api.models.api_keys import Principal
from sessions_api.models.errors import Conflict
from tests.support.api import (
    AUDIT_EVENTS,
    SESSION_REQUESTS,
    SESSIONS,
    WEBHOOK_ENDPOINTS,
    assert_error,
    organization_path,
    scrape,
)
from tests.support.receiver import receiving


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with the queue served every 50 ms (and at once after a release in
    this process), and webhooks allowed to the receiver on 127.0.0.1."""
    return settings.replace(
        queue_poll_seconds=0.05,
        long_poll_check_seconds=0.02,
        webhook_allow_private=True,
        webhook_poll_seconds=0.05,
    )


@pytest.fixture
def iphones(world):
    return [world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2") for n in range(2)]


def _start(client, member, organization_id, wait=600, **body):
    body = {"platform": "ios", **body}
    if wait is not None:
        body["queue"] = {"maxWaitSeconds": wait}
    return client.post(SESSIONS, json=body, headers=member.acting_on(organization_id))


def _release(client, member, organization_id, session_id):
    response = client.post(f"{SESSIONS}/{session_id}/release", headers=member.acting_on(organization_id))
    assert response.status_code == 200, response.text


def _request(client, member, organization_id, request_id, wait=None):
    headers = member.acting_on(organization_id)
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    response = client.get(f"{SESSION_REQUESTS}/{request_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _until_started(client, member, organization_id, request_id):
    request = _request(client, member, organization_id, request_id, wait=5)
    assert request["status"] == "started", request
    return request


def _concurrency(client, member, organization_id):
    return client.get(f"{organization_path(organization_id)}/concurrency", headers=member.headers).json()


def test_a_start_that_can_lease_now_answers_201_as_before(client, admin, team, iphones):
    response = _start(client, admin, team.id)
    assert response.status_code == 201
    assert response.headers["location"] == f"{SESSIONS}/{response.json()['id']}"


def test_a_start_on_a_busy_fleet_is_queued_and_started_when_a_device_frees_up(client, admin, team, iphones):
    held = [_start(client, admin, team.id).json() for _ in iphones]
    response = _start(client, admin, team.id, facts={"build": "1.2.3", "tags": ["smoke"]})
    assert response.status_code == 202, response.text
    queued = response.json()
    assert response.headers["location"] == f"{SESSION_REQUESTS}/{queued['id']}"
    assert (queued["status"], queued["reason"], queued["position"], queued["session"]) == ("queued", "device", 1, None)
    assert queued["user"] == str(admin.user.id) and queued["organization"] == str(team.id)
    view = _concurrency(client, admin, team.id)
    assert (view["live"], view["queued"]) == (2, 1)
    assert view["byPlatform"] == [{"platform": "ios", "live": 2, "queued": 1, "available": 0}]

    _release(client, admin, team.id, held[0]["id"])
    started = _until_started(client, admin, team.id, queued["id"])
    session = started["session"]
    assert session["device"]["id"] == held[0]["device"]["id"] and session["releasedAt"] is None
    assert (session["build"], session["tags"], session["user"]) == ("1.2.3", ["smoke"], str(admin.user.id))
    assert started["position"] is None and started["endedAt"] >= session["createdAt"]
    got = client.get(f"{SESSIONS}/{session['id']}", headers=admin.acting_on(team.id)).json()
    assert got == session
    assert _concurrency(client, admin, team.id)["queued"] == 0


def test_the_queue_serves_an_organization_oldest_first(client, admin, team, iphones):
    held = [_start(client, admin, team.id).json() for _ in iphones]
    waiting = [_start(client, admin, team.id).json() for _ in range(4)]
    assert [request["position"] for request in waiting] == [1, 2, 3, 4]
    listed = client.get(SESSION_REQUESTS, params={"status": "queued"}, headers=admin.acting_on(team.id)).json()["data"]
    assert [request["id"] for request in listed] == [request["id"] for request in reversed(waiting)]
    assert [request["position"] for request in listed] == [4, 3, 2, 1]

    _release(client, admin, team.id, held[1]["id"])
    _until_started(client, admin, team.id, waiting[0]["id"])
    assert [_request(client, admin, team.id, request["id"])["position"] for request in waiting[1:]] == [1, 2, 3]
    _release(client, admin, team.id, held[0]["id"])
    second = _until_started(client, admin, team.id, waiting[1]["id"])
    assert _request(client, admin, team.id, waiting[2]["id"])["status"] == "queued"
    assert second["session"]["device"]["id"] == held[0]["device"]["id"]


def test_a_queued_start_waits_for_the_plan_and_says_so(client, admin, team, iphones):
    plans.set_plan(team.id, 1)
    first = _start(client, admin, team.id).json()
    queued = _start(client, admin, team.id).json()
    assert (queued["status"], queued["reason"]) == ("queued", "concurrency")
    time.sleep(0.2)  # a few rounds: a device is free, the plan is not
    assert _request(client, admin, team.id, queued["id"])["status"] == "queued"
    _release(client, admin, team.id, first["id"])
    _until_started(client, admin, team.id, queued["id"])


def test_a_full_queue_answers_409_with_the_counts_the_live_view_shows(client, admin, team, iphones):
    plans.set_plan(team.id, 1, 2)
    _start(client, admin, team.id)
    for _ in range(2):
        assert _start(client, admin, team.id).status_code == 202
    refused = assert_error(_start(client, admin, team.id), 409, "queue_full")
    message = refused["error"]["message"]
    view = _concurrency(client, admin, team.id)
    assert (view["live"], view["maxLiveSessions"], view["queued"], view["maxQueuedSessions"]) == (1, 1, 2, 2)
    assert "holds 1 live sessions (its plan allows 1)" in message and "2 starts queued" in message and "(2)" in message
    # Without `queue`, exactly the answer of a start on a full plan.
    assert_error(_start(client, admin, team.id, wait=None), 409, "concurrency_limit_reached")


def test_a_start_with_queue_does_not_pass_a_request_already_waiting(app, admin, world, team, iphones):
    """Through the data layer, with no queue server running: a device frees up and no round
    has served the queue yet."""
    other_team = world.organization("Other")
    other = world.member(of=[(other_team, Role.admin)])
    caller = Principal(admin.user.id, admin.key_id, team.id, Role.admin, None)
    other_caller = Principal(other.user.id, other.key_id, other_team.id, Role.admin, None)

    def start(principal, wait=600):
        return leases.start_session(
            principal, leases.DeviceWanted("ios"), render=sessions.session_document, queue_wait_seconds=wait
        )

    held = [start(caller) for _ in iphones]
    waiting = start(caller)
    assert waiting.queued_request_id is not None
    leases.release_session(caller, uuid.UUID(held[0].body["id"]))
    # Its own organization's next start, and another's waiting for an iPhone, queue behind it.
    assert start(caller).queued_request_id is not None
    others = start(other_caller).queued_request_id
    assert others is not None
    # The round serves the organization that holds fewer first (Other: none, Team: one).
    assert [view.row.id for view in queue_serving.serve().started] == [others]
    leases.release_session(caller, uuid.UUID(held[1].body["id"]))
    assert [view.row.id for view in queue_serving.serve().started] == [waiting.queued_request_id]
    # Without `queue`, exactly today's answer: a start leases what is free, or gets 409.
    with pytest.raises(Conflict, match="in use or offline"):
        start(other_caller, wait=None)


def test_organizations_share_the_fleet_fairly(client, world, iphones):
    """Two organizations on one plan size: a freed device goes to the one holding fewer."""
    teams = [world.organization(name) for name in ("Busy", "Quiet")]
    admins = [world.member(of=[(team, Role.admin)]) for team in teams]
    for team in teams:
        plans.set_plan(team.id, 2)
    busy, quiet = zip(admins, teams, strict=True)
    held = [_start(client, busy[0], busy[1].id).json() for _ in iphones]  # Busy holds the fleet
    busy_waiting = [_start(client, busy[0], busy[1].id, wait=600).json() for _ in range(2)]
    quiet_waiting = _start(client, quiet[0], quiet[1].id).json()  # queued last, but holds nothing
    assert busy_waiting[0]["reason"] == "concurrency" and quiet_waiting["reason"] == "device"

    _release(client, busy[0], busy[1].id, held[0]["id"])
    _until_started(client, quiet[0], quiet[1].id, quiet_waiting["id"])
    assert _request(client, busy[0], busy[1].id, busy_waiting[0]["id"])["status"] == "queued"
    _release(client, busy[0], busy[1].id, held[1]["id"])
    _until_started(client, busy[0], busy[1].id, busy_waiting[0]["id"])


def test_a_request_times_out_at_its_deadline(client, admin, team, iphones):
    for _ in iphones:
        _start(client, admin, team.id)
    queued = _start(client, admin, team.id, wait=1).json()
    began = time.monotonic()
    ended = _request(client, admin, team.id, queued["id"], wait=5)
    assert time.monotonic() - began < 3
    assert (ended["status"], ended["endedAt"], ended["position"]) == ("timed_out", ended["deadline"], None)
    assert _concurrency(client, admin, team.id)["queued"] == 0


def test_cancel_takes_a_request_out_of_the_queue(client, admin, world, team, iphones):
    reader = world.member(of=[(team, Role.readonly)])
    held = [_start(client, admin, team.id).json() for _ in iphones]
    first, second = (_start(client, admin, team.id).json() for _ in range(2))
    assert_error(
        client.post(f"{SESSION_REQUESTS}/{first['id']}/cancel", headers=reader.acting_on(team.id)), 403, "forbidden"
    )
    cancelled = client.post(f"{SESSION_REQUESTS}/{first['id']}/cancel", headers=admin.acting_on(team.id))
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["position"]) == ("cancelled", None)
    again = client.post(f"{SESSION_REQUESTS}/{first['id']}/cancel", headers=admin.acting_on(team.id))
    assert again.json() == cancelled.json()  # cancelling a cancelled request changes nothing
    assert _request(client, admin, team.id, second["id"])["position"] == 1
    _release(client, admin, team.id, held[0]["id"])
    _until_started(client, admin, team.id, second["id"])
    assert _request(client, admin, team.id, first["id"])["status"] == "cancelled"
    assert_error(
        client.post(f"{SESSION_REQUESTS}/{second['id']}/cancel", headers=admin.acting_on(team.id)),
        409,
        "request_not_queued",
    )


def test_a_long_poll_answers_soon_after_the_change(client, admin, team, iphones):
    held = [_start(client, admin, team.id).json() for _ in iphones]
    queued = _start(client, admin, team.id).json()
    released_at: list[float] = []

    def release_later():
        time.sleep(0.5)
        _release(client, admin, team.id, held[0]["id"])
        released_at.append(time.monotonic())

    releaser = threading.Thread(target=release_later)
    releaser.start()
    answered = _request(client, admin, team.id, queued["id"], wait=10)
    answered_at = time.monotonic()
    releaser.join()
    assert answered["status"] == "started"
    assert answered_at - released_at[0] < 0.2  # from the release's answer (the change) to the poll's


def test_a_long_poll_without_a_change_answers_after_its_wait(client, admin, team, iphones):
    for _ in iphones:
        _start(client, admin, team.id)
    queued = _start(client, admin, team.id).json()
    began = time.monotonic()
    answered = _request(client, admin, team.id, queued["id"], wait=1)
    assert 0.9 < time.monotonic() - began < 3
    assert answered["status"] == "queued"
    # Unknown preferences and a `wait` that is no number are ignored: answered at once.
    headers = {**admin.acting_on(team.id), "Prefer": "respond-async, wait=soon"}
    began = time.monotonic()
    assert client.get(f"{SESSION_REQUESTS}/{queued['id']}", headers=headers).status_code == 200
    assert time.monotonic() - began < 0.9


def test_an_idempotent_retry_of_a_queued_start_answers_the_same_request(client, admin, team, iphones):
    held = [_start(client, admin, team.id).json() for _ in iphones]
    headers = {**admin.acting_on(team.id), "Idempotency-Key": "queued-1"}
    body = {"platform": "ios", "queue": {"maxWaitSeconds": 600}}
    first = client.post(SESSIONS, json=body, headers=headers)
    assert first.status_code == 202
    _release(client, admin, team.id, held[0]["id"])
    _until_started(client, admin, team.id, first.json()["id"])
    retry = client.post(SESSIONS, json=body, headers=headers)
    assert (retry.status_code, retry.headers["idempotent-replayed"]) == (202, "true")
    assert retry.json()["id"] == first.json()["id"] and retry.json()["status"] == "started"
    changed = client.post(SESSIONS, json={**body, "queue": {"maxWaitSeconds": 60}}, headers=headers)
    assert_error(changed, 422, "idempotency_key_reused")


def test_another_organizations_request_is_not_found(client, admin, world, team, iphones):
    other_team = world.organization("Other")
    other = world.member(of=[(other_team, Role.admin)])
    for _ in iphones:
        _start(client, admin, team.id)
    queued = _start(client, admin, team.id).json()
    response = client.get(f"{SESSION_REQUESTS}/{queued['id']}", headers=other.acting_on(other_team.id))
    assert_error(response, 404, "not_found")
    assert_error(
        client.post(f"{SESSION_REQUESTS}/{queued['id']}/cancel", headers=other.acting_on(other_team.id)),
        404,
        "not_found",
    )
    assert client.get(SESSION_REQUESTS, headers=other.acting_on(other_team.id)).json()["data"] == []


def test_a_wait_beyond_the_servers_maximum_is_refused(client, admin, team, iphones):
    assert_error(_start(client, admin, team.id, wait=1801), 400, "invalid_request")
    assert_error(_start(client, admin, team.id, wait=0), 400, "invalid_request")


def test_a_queue_of_size_zero_refuses_every_queued_start(client, admin, team, iphones):
    plans.set_plan(team.id, 1, 0)
    _start(client, admin, team.id)
    assert_error(_start(client, admin, team.id), 409, "queue_full")


def test_leaving_the_queue_is_audited_as_the_requesters_start(client, admin, team, iphones):
    held = [_start(client, admin, team.id).json() for _ in iphones]
    queued = _start(client, admin, team.id).json()
    _release(client, admin, team.id, held[0]["id"])
    session = _until_started(client, admin, team.id, queued["id"])["session"]
    events = client.get(AUDIT_EVENTS, params={"type": "session.started"}, headers=admin.acting_on(team.id)).json()[
        "data"
    ]
    started = next(event for event in events if event["target"]["id"] == session["id"])
    assert (started["origin"], started["actor"]["user"], started["actor"]["key"]) == (
        "api",
        str(admin.user.id),
        str(admin.key_id),
    )


def test_a_round_serves_what_a_device_brought_online_makes_possible(client, admin, world, team, iphones):
    disabled = world.device(platform="ios", type="simulator", name="iPhone 99", os_version="18.2")
    devices.set_disabled(disabled.id, True)
    queued = _start(client, admin, team.id, name="iPhone 99").json()
    assert queued["reason"] == "device"
    time.sleep(0.2)
    assert _request(client, admin, team.id, queued["id"])["status"] == "queued"
    devices.set_disabled(disabled.id, False)  # the operator brings it online: the poll serves it
    assert _until_started(client, admin, team.id, queued["id"])["session"]["device"]["id"] == str(disabled.id)


def test_a_queued_start_keeps_what_was_asked(client, admin, team, iphones):
    held = [_start(client, admin, team.id).json() for _ in iphones]
    queued = _start(client, admin, team.id, osVersion="18.2", maxDurationMinutes=5).json()
    assert queue_serving.serve().started == []  # nothing free yet
    _release(client, admin, team.id, held[0]["id"])
    session = _until_started(client, admin, team.id, queued["id"])["session"]
    lasts = parse_rfc3339(session["expiresAt"]) - parse_rfc3339(session["createdAt"])
    assert (session["device"]["osVersion"], lasts) == ("18.2", timedelta(minutes=5))


def test_metrics_show_the_queue_depth_by_class_and_the_waits(client, admin, world, team, iphones):
    """The depth is read from the database at each scrape, by class of organization; the wait
    of each request that left the queue is observed by the process that served it."""

    def waits(samples, outcome):
        return samples.get(("sessions_api_queue_wait_seconds_count", (("outcome", outcome),)), 0.0)

    before = scrape(client)
    held = [_start(client, admin, team.id).json() for _ in iphones]
    own_plan = world.organization("Planned")
    plans.set_plan(own_plan.id, max_queued=5)
    planner = world.member(of=[(own_plan, Role.admin)])
    for member, organization_id in ((admin, team.id), (admin, team.id), (planner, own_plan.id)):
        assert _start(client, member, organization_id).status_code == 202
    depth = scrape(client)
    assert [
        depth[("sessions_api_queued_session_requests", (("organization_class", kind),))]
        for kind in ("default", "custom", "self_service")
    ] == [2, 1, 0]
    _release(client, admin, team.id, held[0]["id"])
    for _ in range(100):
        if waits(scrape(client), "started") == waits(before, "started") + 1:
            break
        time.sleep(0.02)
    after = scrape(client)
    assert waits(after, "started") == waits(before, "started") + 1
    assert (
        sum(
            after[("sessions_api_queued_session_requests", (("organization_class", kind),))]
            for kind in ("default", "custom", "self_service")
        )
        == 2
    )


def test_webhooks_tell_a_start_queued_started_and_timed_out(client, admin, team, iphones):
    events = ["session.queued", "session.started", "session.queue_timed_out"]
    with receiving() as receiver:
        hook = {"url": receiver.url("/hook"), "events": events}
        endpoint = client.post(WEBHOOK_ENDPOINTS, json=hook, headers=admin.acting_on(team.id)).json()
        held = [_start(client, admin, team.id).json() for _ in iphones]
        served = _start(client, admin, team.id).json()
        timed_out = _start(client, admin, team.id, wait=1).json()
        _release(client, admin, team.id, held[0]["id"])
        started = _until_started(client, admin, team.id, served["id"])
        ended = _request(client, admin, team.id, timed_out["id"], wait=5)
        deliveries = receiver.wait_for("/hook", len(iphones) + 4)
    assert all(delivery.verifies_with(endpoint["secret"]) for delivery in deliveries)
    bodies = [json.loads(delivery.body) for delivery in deliveries]
    by_type: dict[str, list[dict]] = {}
    for body in bodies:
        by_type.setdefault(body["type"], []).append(body)
    queued = {body["data"]["id"]: body for body in by_type["session.queued"]}
    assert queued.keys() == {served["id"], timed_out["id"]}  # delivered concurrently: in any order
    assert queued[served["id"]]["data"] == served  # the request as the 202 answered it
    assert queued[served["id"]]["timestamp"] == served["queuedAt"]
    (expired,) = by_type["session.queue_timed_out"]
    assert expired["data"] == ended and expired["timestamp"] == ended["deadline"]
    started_ids = [body["data"]["id"] for body in by_type["session.started"]]
    assert started["session"]["id"] in started_ids and len(started_ids) == len(iphones) + 1


def test_the_list_of_requests_pages_by_queued_at_without_gap_or_repeat(client, admin, team, iphones):
    for _ in iphones:
        _start(client, admin, team.id)
    queued = [_start(client, admin, team.id).json()["id"] for _ in range(5)]
    seen, before = [], None
    for _ in range(5):
        params = {"limit": 2, **({"before": before} if before else {})}
        page = client.get(SESSION_REQUESTS, params=params, headers=admin.acting_on(team.id)).json()
        seen += [request["id"] for request in page["data"]]
        before = page.get("nextCursor")
        if before is None:
            break
    assert seen == list(reversed(queued))
