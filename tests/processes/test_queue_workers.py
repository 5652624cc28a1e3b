"""The queue across server processes: 60 queued starts over 5 devices served in order by two
workers, none twice; and a process killed in the middle of a start from the queue leaves
nothing half done."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import Role, api_keys, devices, leases, queue_serving, sessions, tenancy
from sessions_api.models.api_keys import Principal
from sessions_api.models.tables import SessionRecord, SessionRequest
from tests.support.live_server import running_server, server_env

pytestmark = pytest.mark.live_server

DEVICES, QUEUED = 5, 60


def _call(base: str, secret: str, method: str, path: str, body: dict | None = None, **headers: str) -> dict:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=90) as response:
        return {**json.loads(response.read()), "http_status": response.status}


def test_60_queued_starts_over_5_devices_are_served_in_order_by_two_workers(private_database_url, tmp_path):
    env = server_env(
        private_database_url,
        SESSIONS_API_QUEUE_POLL_SECONDS="0.2",
        SESSIONS_API_START_RATE_LIMIT="1000/second",
        SESSIONS_API_RATE_LIMIT="100000/minute",
        # One key long-polls all 60 requests at once, as a CI farm's one key would.
        SESSIONS_API_MAX_WAITS_PER_KEY=str(QUEUED),
        SESSIONS_API_MAX_WAITS_PER_ORGANIZATION=str(QUEUED),
    )
    db.configure(Settings(database_url=private_database_url))
    user, personal = tenancy.create_user("queuer@example.com")
    for n in range(DEVICES):
        devices.add_device("android", "emulator", f"Pixel {n}", "15")
    _, secret = api_keys.create_key(user.id)
    start = {"platform": "android", "queue": {"maxWaitSeconds": 600}}

    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        held = [_call(base, secret, "POST", "/sessions", start) for _ in range(DEVICES)]
        assert {answer["http_status"] for answer in held} == {201}
        queued = [_call(base, secret, "POST", "/sessions", start) for _ in range(QUEUED)]
        assert [(answer["http_status"], answer["position"]) for answer in queued] == [
            (202, place) for place in range(1, QUEUED + 1)
        ]

        def wait_started(request: dict) -> dict:
            for _ in range(20):
                answer = _call(base, secret, "GET", f"/session-requests/{request['id']}", Prefer="wait=30")
                if answer["status"] != "queued":
                    return answer
            raise AssertionError(f"{request['id']} never left the queue")

        def release_all_live() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                live = _call(base, secret, "GET", "/sessions?status=live&limit=100")["data"]
                for session in live:
                    _call(base, secret, "POST", f"/sessions/{session['id']}/release")
                listed = _call(base, secret, "GET", "/session-requests?status=queued&limit=1")
                if not listed["data"] and not live:
                    return
                time.sleep(0.05)

        # Long-polls spread over both workers while a client releases whatever is live.
        with ThreadPoolExecutor(max_workers=QUEUED + 1) as pool:
            releasing = pool.submit(release_all_live)
            started = list(pool.map(wait_started, queued))
            releasing.result()

    assert {answer["status"] for answer in started} == {"started"}
    sessions = [answer["session"] for answer in started]
    assert len({session["id"] for session in sessions}) == QUEUED  # none started twice
    # Oldest first: the sessions began in the order the starts were queued.
    began = [session["createdAt"] for session in sessions]
    assert began == sorted(began)
    with db.reading() as conn:
        leased = conn.execute(select(func.count()).where(SessionRecord.organization_id == personal.id)).scalar_one()
        started_requests = conn.execute(
            select(func.count()).where(SessionRequest.status == "started", SessionRequest.session_id.is_not(None))
        ).scalar_one()
    assert (leased, started_requests) == (DEVICES + QUEUED, QUEUED)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# A process serving the queue that dies between leasing the device and committing.
_DIES_MID_START = """
import os, signal, sys
from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import queue, queue_serving

db.configure(Settings(database_url=sys.argv[1]))
def die(**kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the session is inserted, the request marked: uncommitted
queue.view_in = die
queue_serving.serve()
"""


def test_a_process_killed_in_the_middle_of_a_start_from_the_queue_leaves_nothing_half_done(private_database_url):
    db.configure(Settings(database_url=private_database_url))
    user, personal = tenancy.create_user("killed@example.com")
    device = devices.add_device("ios", "simulator", "iPhone 16", "18.2")
    devices.set_disabled(device.id, True)
    key, _ = api_keys.create_key(user.id)
    caller = Principal(user.id, key.id, personal.id, Role.admin, None)
    queued = leases.start_session(
        caller, leases.DeviceWanted("ios"), render=sessions.session_document, queue_wait_seconds=600
    ).queued_request_id
    assert queued is not None
    devices.set_disabled(device.id, False)

    killed = subprocess.run(
        [sys.executable, "-c", _DIES_MID_START, private_database_url], capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with db.reading() as conn:
        assert conn.execute(select(func.count()).select_from(SessionRecord)).scalar_one() == 0
        assert conn.execute(select(SessionRequest.status).where(SessionRequest.id == queued)).scalar_one() == "queued"

    served = queue_serving.serve()  # another process serves it: once
    assert [view.row.id for view in served.started] == [queued]
    assert queue_serving.serve().started == []
    with db.reading() as conn:
        assert conn.execute(select(func.count()).select_from(SessionRecord)).scalar_one() == 1
