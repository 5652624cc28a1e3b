"""Bursts: the top of the hour, when hundreds of CI jobs of one organization start sessions at
once. `python -m bench.bursts [--database-url URL] [--workers 1,2]`.

Each run builds a fresh database through the product's own command line (`db upgrade`, a
user and an organization with its plan raised to 1,000 live and 1,000 queued, `device
import` of the fleet), starts `sessions-api serve`, and then:

1. **leases**: `--starts` createSession calls at once, from `--connections` connections,
   with as many iOS devices free: the time until every one is answered, createSession's p50
   and p99, the statuses, and the double leases found in the sessions' intervals (must be 0).
2. **queue**: the same starts with `queue` against `--queue-devices` devices, each client on a
   connection of its own releasing its session as soon as it learns of it (long-polling
   `getSessionRequest` with `Prefer: wait=60`): every start served, none twice, and served in the order queued (a
   request queued later that started before an earlier one is counted out of order).

Results go to `BENCHMARKS-bursts-<database>.json` and print as JSON. Every wait is bounded
(`--timeout`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.environment import DATA, git, machine, now, reset_database
from bench.servers import OURS_ENV, ROOT, cli_json, serve_ours, sessions_api_command
from bench.writes import double_leases

API = "/api/v1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bursts", description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="default: a SQLite file under bench/.data/; PostgreSQL: a database 'bench…'")
    p.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    p.add_argument("--starts", type=int, default=500, help="starts at once (default 500)")
    p.add_argument("--connections", type=int, default=64, help="client connections (default 64)")
    p.add_argument("--queue-devices", type=int, default=50, help="the fleet in the queue run (default 50)")
    p.add_argument("--timeout", type=float, default=300, help="the longest a run may take (s)")
    p.add_argument("--json", type=Path, help="default: BENCHMARKS-bursts-<database>.json")
    return p.parse_args(argv)


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        **OURS_ENV,
        "DATABASE_URL": url,
        "SESSIONS_API_START_RATE_LIMIT": "60000000/minute",
        # Every queued client long-polls its request: the wait caps are raised for the run.
        "SESSIONS_API_MAX_WAITS_PER_KEY": "1000",
        "SESSIONS_API_MAX_WAITS_PER_ORGANIZATION": "1000",
    }


def prepare(url: str, devices: int) -> dict[str, str]:
    """A fresh database with one organization (plan raised), its admin's key and `devices` iOS
    devices, built with the product's command line."""
    reset_database(url)
    env = _env(url)
    subprocess.run([*sessions_api_command(), "db", "upgrade"], env=env, check=True, capture_output=True)
    user = cli_json(env, "user", "create", "--email", "bursts@example.com")
    team = cli_json(env, "org", "create", "--name", "Bursts")
    cli_json(env, "member", "add", "--org", team["id"], "--user", user["id"], "--role", "admin")
    cli_json(env, "org", "plan", "--org", team["id"], "--max-live", "1000", "--max-queued", "1000")
    fleet = DATA / f"bursts-fleet-{devices}.jsonl"
    fleet.write_text(
        "".join(
            json.dumps({"platform": "ios", "type": "simulator", "name": f"iPhone {n}", "osVersion": "18.2"}) + "\n"
            for n in range(devices)
        )
    )
    cli_json(env, "device", "import", str(fleet))
    key = cli_json(env, "key", "create", "--user", user["id"], "--org", team["id"], "--name", "bursts")
    return {"secret": key["secret"], "organization": team["id"]}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def _burst(base: str, setup: dict[str, str], starts: int, connections: int, queue: bool, timeout: float):
    headers = {"Authorization": f"Bearer {setup['secret']}", "X-Organization-Id": setup["organization"]}
    body: dict[str, Any] = {"platform": "ios"}
    if queue:
        body["queue"] = {"maxWaitSeconds": int(timeout)}
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    served: list[str] = []
    # Queued clients each hold a long-poll open, as separate CI jobs would: a connection each,
    # or a started session's client could wait behind others' polls to learn of it.
    pool = starts if queue else connections
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    gate = asyncio.Event()

    async with httpx.AsyncClient(base_url=base + API, headers=headers, limits=limits, timeout=timeout) as client:

        async def one() -> None:
            await gate.wait()  # all at once
            sent = time.monotonic()
            # With an Idempotency-Key, a start whose connection dropped is simply sent again.
            key = {"Idempotency-Key": str(uuid.uuid4())}
            answer = await _sent(lambda: client.post("/sessions", json=body, headers=key))
            latencies.append(time.monotonic() - sent)
            statuses[str(answer.status_code)] = statuses.get(str(answer.status_code), 0) + 1
            if answer.status_code == 201:
                session_id = answer.json()["id"]
            elif answer.status_code == 202:
                session_id = await _until_started(client, answer.json()["id"], timeout)
            else:
                return
            if session_id is None:
                return
            served.append(session_id)
            if queue:  # released as soon as it is known, freeing the device for the next
                await _sent(lambda: client.post(f"/sessions/{session_id}/release"))

        tasks = [asyncio.create_task(one()) for _ in range(starts)]
        began = time.monotonic()
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        elapsed = time.monotonic() - began
    return {
        "seconds_until_all_answered" if not queue else "seconds_until_all_served": round(elapsed, 3),
        "create_p50_ms": round(1000 * statistics.median(latencies), 1),
        "create_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "statuses": statuses,
        "served": len(served),
        "served_twice": len(served) - len(set(served)),
    }


async def _sent(request, attempts: int = 5) -> httpx.Response:
    """`request()`, sent again after a dropped connection (a keep-alive the server closed as it
    was reused): what any client of an idempotent request does."""
    for _ in range(attempts - 1):
        try:
            return await request()
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    return await request()


async def _until_started(client: httpx.AsyncClient, request_id: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = await client.get(f"/session-requests/{request_id}", headers={"Prefer": "wait=60"})
        except httpx.TransportError:  # a dropped connection: ask again, as any client would
            await asyncio.sleep(0.1)
            continue
        request = answer.json()
        if request.get("status") == "started":
            session: str = request["session"]["id"] if isinstance(request["session"], dict) else request["session"]
            return session
        if request.get("status") != "queued":
            return None
    return None


def out_of_order(url: str) -> int:
    """Requests that started before a request queued earlier did (the queue is first come, first
    served within an organization)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    query = text(
        "SELECT s.created_at FROM session_requests r JOIN sessions s ON s.id = r.session_id "
        "WHERE r.status = 'started' ORDER BY r.created_at"
    )
    try:
        with engine.connect() as conn:
            started = [row[0] for row in conn.execute(query)]
    finally:
        engine.dispose()
    return sum(1 for earlier, later in zip(started, started[1:], strict=False) if later < earlier)


def run(url: str, workers: int, args: argparse.Namespace, queue: bool) -> dict:
    devices = args.queue_devices if queue else args.starts
    setup = prepare(url, devices)
    log = DATA / f"bursts-{'queue' if queue else 'leases'}-w{workers}.log"
    process, origin = serve_ours(_env(url), log, workers)
    try:
        result = asyncio.run(_burst(origin, setup, args.starts, args.connections, queue, args.timeout))
    finally:
        process.terminate()
        process.wait(60)
    result["devices"] = devices
    result["double_leases"] = double_leases(url, setup["organization"])
    if queue:
        result["out_of_order"] = out_of_order(url)
    kind = "queue" if queue else "leases"
    print(f"[bursts] {kind}, {workers} worker(s): {json.dumps(result)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{DATA / 'bursts.db'}"
    database = "sqlite" if url.startswith("sqlite") else "postgresql"
    results: dict[str, Any] = {
        "started_at": now(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": machine(),
        "database": database,
        "starts": args.starts,
        "connections": args.connections,
        "runs": {},
    }
    for workers in (int(w) for w in args.workers.split(",")):
        for queue in (False, True):
            results["runs"][f"{'queue' if queue else 'leases'}/{workers}"] = run(url, workers, args, queue)
    path = args.json or ROOT / f"BENCHMARKS-bursts-{database}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
