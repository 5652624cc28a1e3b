"""Webhook deliveries from real server processes to a real receiver on 127.0.0.1, verified
with the `standardwebhooks` package as any receiver would: one event per change and endpoint,
retries with the same webhook-id, time-outs, a receiver that comes back, a worker killed
between commit and delivery, and two workers on PostgreSQL sharing the outbox."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, session_import
from tests.support.live_server import api_call, free_port, running_server, server_env
from tests.support.receiver import receiving
from tests.support.world import World

pytestmark = pytest.mark.live_server

ALL_EVENTS = ["session.started", "session.released", "session.expired"]


def _env(database_url: str, **extra: str) -> dict:
    """A server that may deliver to 127.0.0.1 over http, looks for due deliveries often, and
    retries within a second."""
    settings = {
        "SESSIONS_API_WEBHOOK_ALLOW_PRIVATE": "true",
        "SESSIONS_API_WEBHOOK_POLL_SECONDS": "0.1",
        "SESSIONS_API_WEBHOOK_RETRY_SCHEDULE": "300ms,300ms",
        "SESSIONS_API_WEBHOOK_TIMEOUT_SECONDS": "1",
        "SESSIONS_API_EXPIRY_SWEEP_SECONDS": "0.2",
        **extra,
    }
    return server_env(database_url, **settings)


def _subscribe(base: str, admin, organization, url: str, events: list[str]) -> dict:
    body = {"url": url, "events": events}
    endpoint = api_call(base, admin.acting_on(organization.id), "POST", "/webhook-endpoints", body)
    assert endpoint is not None and endpoint["secret"].startswith("whsec_")
    return endpoint


def _attempts(base: str, admin, organization, endpoint: dict) -> list[dict]:
    page = api_call(base, admin.acting_on(organization.id), "GET", f"/webhook-endpoints/{endpoint['id']}/deliveries")
    assert page is not None
    return page["data"]


def test_start_release_and_expiry_each_reach_every_subscribed_endpoint_once(world, database_url, tmp_path):
    team, other = world.organization("Team"), world.organization("Other")
    admin = world.member(of=[(team, Role.admin)])
    outsider = world.member(of=[(other, Role.admin)])
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    with receiving() as receiver, running_server(_env(database_url), log_path=tmp_path / "server.log") as (base, _):
        everything = _subscribe(base, admin, team, receiver.url("/all"), ALL_EVENTS)
        releases = _subscribe(base, admin, team, receiver.url("/releases"), ["session.released"])
        _subscribe(base, outsider, other, receiver.url("/other"), ALL_EVENTS)

        session = api_call(base, admin.acting_on(team.id), "POST", "/sessions", {"platform": "ios"})
        released = api_call(base, admin.acting_on(team.id), "POST", f"/sessions/{session['id']}/release")
        # A session past its expiry: the sweeper releases it, and says so.
        started = utcnow() - timedelta(hours=2)
        record = {
            "organization": str(team.id),
            "user": str(admin.user.id),
            "device": str(world.device(name="Old").id),
            "createdAt": format_utc(started),
            "expiresAt": format_utc(started + timedelta(minutes=30)),
        }
        session_import.import_sessions([json.dumps(record)])

        deliveries = receiver.wait_for("/all", 3)
        receiver.wait_for("/releases", 1)
        time.sleep(1)  # a few more polls: nothing else may arrive
        assert len(receiver.at("/all")) == 3 and len(receiver.at("/releases")) == 1
        assert receiver.at("/other") == []
        attempts = _attempts(base, admin, team, everything)

    events = {json.loads(delivery.body)["type"]: delivery for delivery in deliveries}
    assert set(events) == set(ALL_EVENTS)
    for delivery in [*deliveries, *receiver.at("/releases")]:
        assert delivery.verifies_with(everything["secret"] if delivery.path == "/all" else releases["secret"])
        assert delivery.headers["content-type"] == "application/json"
    started_event = json.loads(events["session.started"].body)
    assert started_event["data"] == session and started_event["timestamp"] == session["createdAt"]
    released_event = json.loads(events["session.released"].body)
    assert released_event["data"] == released and released_event["timestamp"] == released["releasedAt"]
    expired_event = json.loads(events["session.expired"].body)
    assert expired_event["data"]["releasedAt"] == expired_event["data"]["expiresAt"] == record["expiresAt"]
    assert json.loads(receiver.at("/releases")[0].body) == released_event
    assert len({delivery.webhook_id for delivery in deliveries}) == 3
    assert sorted(attempt["event"]["type"] for attempt in attempts) == sorted(ALL_EVENTS)
    assert all(attempt["succeeded"] and attempt["responseStatus"] == 204 for attempt in attempts)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def _flaky(path: str, n: int) -> tuple[int, float]:
    if path == "/flaky":
        return (500, 0.0) if n <= 2 else (200, 0.0)
    if path == "/slow":
        return 200, 3.0  # beyond the 1 s time limit, every time
    return 204, 0.0


def test_failures_are_retried_with_the_same_webhook_id_until_the_schedule_ends(world, database_url, tmp_path):
    flaky_team, slow_team, down_team = (world.organization(name) for name in ("Flaky", "Slow", "Down"))
    admins = {team.name: world.member(of=[(team, Role.admin)]) for team in (flaky_team, slow_team, down_team)}
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    down_port = free_port()  # nothing listens there until the receiver "comes back"
    env = _env(database_url, SESSIONS_API_WEBHOOK_RETRY_SCHEDULE="300ms,300ms,2s")
    with receiving(_flaky) as receiver, running_server(env, log_path=tmp_path / "server.log") as (base, _):
        flaky = _subscribe(base, admins["Flaky"], flaky_team, receiver.url("/flaky"), ["session.started"])
        slow = _subscribe(base, admins["Slow"], slow_team, receiver.url("/slow"), ["session.started"])
        down = _subscribe(base, admins["Down"], down_team, f"http://127.0.0.1:{down_port}/back", ["session.started"])
        for team in (flaky_team, slow_team, down_team):
            session = api_call(base, admins[team.name].acting_on(team.id), "POST", "/sessions", {"platform": "ios"})
            api_call(base, admins[team.name].acting_on(team.id), "POST", f"/sessions/{session['id']}/release")

        flaky_deliveries = receiver.wait_for("/flaky", 3)
        deadline = time.monotonic() + 20
        while len(_attempts(base, admins["Down"], down_team, down)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        with receiving(port=down_port) as back:  # up again before the retries run out
            back.wait_for("/back", 1)
        deadline = time.monotonic() + 20
        while len(_attempts(base, admins["Slow"], slow_team, slow)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        flaky_attempts = _attempts(base, admins["Flaky"], flaky_team, flaky)
        slow_attempts = _attempts(base, admins["Slow"], slow_team, slow)
        down_attempts = _attempts(base, admins["Down"], down_team, down)

    assert len({delivery.webhook_id for delivery in flaky_deliveries}) == 1
    assert all(delivery.verifies_with(flaky["secret"]) for delivery in flaky_deliveries)
    assert [(a["attempt"], a["responseStatus"], a["succeeded"]) for a in flaky_attempts] == [
        (3, 200, True),
        (2, 500, False),
        (1, 500, False),
    ]
    assert {a["event"]["id"] for a in flaky_attempts} == {flaky_deliveries[0].webhook_id}
    # The slow receiver never answers in time: four attempts (the schedule's three retries), then no more.
    assert [a["attempt"] for a in slow_attempts] == [4, 3, 2, 1]
    assert all(a["responseStatus"] is None and a["error"] == "timeout" for a in slow_attempts)
    assert down_attempts[0]["succeeded"] and down_attempts[0]["attempt"] >= 2
    assert all(a["responseStatus"] is None and a["error"] == "connection_refused" for a in down_attempts[1:])


def test_an_event_committed_before_a_crash_is_delivered_after_the_restart(world, database_url, tmp_path):
    team = world.organization("Team")
    admin = world.member(of=[(team, Role.admin)])
    world.device(platform="ios", type="simulator", name="iPhone 16", os_version="18.2")
    # The first server looks for due deliveries at its start only: what is committed after waits.
    idle = _env(database_url, SESSIONS_API_WEBHOOK_POLL_SECONDS="3600")
    with receiving() as receiver:
        with running_server(idle, log_path=tmp_path / "first.log") as (base, process):
            endpoint = _subscribe(base, admin, team, receiver.url("/hook"), ["session.started"])
            session = api_call(base, admin.acting_on(team.id), "POST", "/sessions", {"platform": "ios"})
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        assert receiver.at("/hook") == []
        with running_server(_env(database_url), log_path=tmp_path / "second.log"):
            (delivery,) = receiver.wait_for("/hook", 1)
            time.sleep(0.5)
            assert len(receiver.at("/hook")) == 1
    assert delivery.verifies_with(endpoint["secret"])
    assert json.loads(delivery.body)["data"]["id"] == session["id"]


SESSIONS_EACH = 100


def test_two_workers_on_postgresql_deliver_each_event_exactly_once(postgres, tmp_path):
    database_url = postgres.create()
    # The data layer of this process on that database, for the fixtures below (as the app factory does).
    db.configure(Settings(database_url=database_url))
    world = World()
    team = world.organization("Team")
    admin = world.member(of=[(team, Role.admin)])
    for n in range(10):
        world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2")
    env = _env(database_url, SESSIONS_API_RATE_LIMIT="off", SESSIONS_API_START_RATE_LIMIT="off")
    with (
        receiving() as receiver,
        running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _),
    ):
        endpoint = _subscribe(base, admin, team, receiver.url("/hook"), ["session.started", "session.released"])

        def start_and_release(_: int) -> None:
            for _attempt in range(50):  # another thread may hold every device for a moment
                try:
                    session = api_call(base, admin.acting_on(team.id), "POST", "/sessions", {"platform": "ios"})
                except OSError as exc:
                    if getattr(exc, "code", None) == 409:
                        time.sleep(0.05)
                        continue
                    raise
                api_call(base, admin.acting_on(team.id), "POST", f"/sessions/{session['id']}/release")
                return
            raise AssertionError("no device came free")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(start_and_release, range(SESSIONS_EACH)))
        deliveries = receiver.wait_for("/hook", 2 * SESSIONS_EACH, timeout=60)
        time.sleep(1.5)  # more polls by both workers: none may send an event again
        deliveries = receiver.at("/hook")

    ids = [delivery.webhook_id for delivery in deliveries]
    assert len(ids) == len(set(ids)) == 2 * SESSIONS_EACH
    assert all(delivery.verifies_with(endpoint["secret"]) for delivery in deliveries)
    types = [json.loads(delivery.body)["type"] for delivery in deliveries]
    assert types.count("session.started") == types.count("session.released") == SESSIONS_EACH
    assert "Traceback" not in (tmp_path / "server.log").read_text()
