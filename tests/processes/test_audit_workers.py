"""The audit log of a server with two workers, each sweeping expired sessions, while requests
and the command line change the same organization: every change recorded once, paging exact."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, session_import
from tests.support.live_server import COMMAND, running_server, server_env

pytestmark = pytest.mark.live_server

EXPIRED, RENAMERS, RENAMES_EACH, JOINERS = 12, 4, 8, 3


def _call(base: str, secret: str, method: str, path: str, body: dict | None = None, **query: str) -> dict:
    url = f"{base}{path}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _all_events(base: str, secret: str, **filters: str) -> list[dict]:
    """The audit log of the key's organization, followed from page to page."""
    seen, query = [], {"limit": "7", **filters}
    while True:
        page = _call(base, secret, "GET", "/audit-events", **query)
        seen += page["data"]
        if "nextCursor" not in page:
            return seen
        query["before"] = page["nextCursor"]


def test_each_change_is_recorded_once_whichever_worker_or_command_made_it(world, database_url, tmp_path):
    team = world.organization("Team")
    admin = world.member(of=[(team, Role.admin)], bound_to=team)
    joiners = [world.member() for _ in range(JOINERS)]
    started = utcnow() - timedelta(hours=2)
    lines = [
        json.dumps(
            {
                "organization": str(team.id),
                "user": str(admin.user.id),
                "device": str(world.device(name=f"Live {n}").id),
                "createdAt": format_utc(started),
                "expiresAt": format_utc(started + timedelta(minutes=30)),
            }
        )
        for n in range(EXPIRED)
    ]
    session_import.import_sessions(lines)  # all expired already: the first sweeps race for them
    env = server_env(database_url, SESSIONS_API_EXPIRY_SWEEP_SECONDS="0.2")
    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        existing = {event["id"] for event in _all_events(base, admin.secret)}
        stop, traversals, problems = threading.Event(), [0], []

        def page_through() -> None:
            while not stop.is_set():
                ids = [event["id"] for event in _all_events(base, admin.secret)]
                if len(ids) != len(set(ids)) or not existing <= set(ids):
                    problems.append(ids)
                traversals[0] += 1

        def rename(worker: int) -> None:
            for n in range(RENAMES_EACH):
                _call(base, admin.secret, "PATCH", f"/organizations/{team.id}", {"name": f"Team {worker}-{n}"})

        def join(member) -> None:
            argv = [
                COMMAND,
                "member",
                "add",
                "--org",
                str(team.id),
                "--user",
                str(member.user.id),
                "--role",
                "readonly",
            ]
            subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)

        pager = threading.Thread(target=page_through)
        pager.start()
        with ThreadPoolExecutor(RENAMERS + JOINERS) as pool:
            changes = [pool.submit(rename, worker) for worker in range(RENAMERS)]
            changes += [pool.submit(join, member) for member in joiners]
            for change in changes:
                change.result()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            expired = _all_events(base, admin.secret, type="session.expired")
            if len(expired) >= EXPIRED:
                break
            time.sleep(0.2)
        time.sleep(1)  # a few more sweeps by both workers: none may record an expiry again
        stop.set()
        pager.join(timeout=60)
        events = _all_events(base, admin.secret)

    assert problems == [] and traversals[0] >= 1
    assert len({event["id"] for event in events}) == len(events)
    assert {event["organization"] for event in events} == {str(team.id)}
    renamed = sorted(event["data"]["after"]["name"] for event in events if event["type"] == "organization.renamed")
    assert renamed == sorted(f"Team {worker}-{n}" for worker in range(RENAMERS) for n in range(RENAMES_EACH))
    joined = [event for event in events if event["type"] == "member.added" and event["origin"] == "cli"]
    assert sorted(event["target"]["id"] for event in joined) == sorted(
        [str(admin.user.id)] + [str(member.user.id) for member in joiners]
    )
    expired = [event for event in events if event["type"] == "session.expired"]
    assert len(expired) == len({event["target"]["id"] for event in expired}) == EXPIRED
    assert all(event["origin"] == "system" and event["actor"] is None for event in expired)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
