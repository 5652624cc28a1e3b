"""Writes and webhook deliveries, measured: `python -m bench.writes [--database-url URL]`.

Three measurements, each on a fresh database built through the product's data layer (one
organization, a fleet of iOS devices, an admin's key; for ours, webhook endpoints on a local
receiver, `bench.receiver`):

1. **writes**: start + release cycles per second (createSession with an Idempotency-Key,
   then releaseSession), `--concurrency` clients for `--duration` seconds, against ours
   (audit log on, two endpoints subscribed to every session event, and none) and the
   performance-aware FastAPI peer (the same two operations with the same guarantees and the
   same rows written in their transactions, `bench.core_writes`: like for like), at each
   worker count. What each side wrote per cycle is counted from the database. Afterwards:
   no device ever had two live sessions (read from the sessions' intervals), and every
   event ours wrote reached both endpoints, once.
2. **deliveries**: a backlog of events is written with the server down (through the data
   layer's own start and release), then ours starts and drains it to one endpoint: events
   per second from the first arrival to the last, at each worker count, with the receiver
   answering after 0 ms and after `--slow-ms`.
3. **lag**: with ours serving, cycles at a steady rate (`--lag-rate` events per second) for
   `--duration` seconds; the lag of each event from its commit (the event's timestamp) to
   its arrival, p50 and p99.

Results go to `BENCHMARKS-writes-<database>.json` and BENCHMARKS.md (between markers).
Every wait is bounded (`--drain-timeout`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from bench import report
from bench.environment import DATA, git, machine, now, reset_database
from bench.servers import ROOT, Server, free_port

API = "/api/v1"
HOOK_EVENTS = ["session.started", "session.released", "session.expired"]
WRITES_TARGET = 1.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="default: a SQLite file under bench/.data/; PostgreSQL: a database 'bench…'")
    p.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    p.add_argument("--duration", type=float, default=10, help="seconds of cycles per measurement (default 10)")
    p.add_argument("--concurrency", type=int, default=16, help="clients cycling at once (default 16)")
    p.add_argument("--devices", type=int, default=64, help="devices in the fleet (default 64)")
    p.add_argument("--backlog", type=int, default=2000, help="events in the delivery backlog at 0 ms (default 2000)")
    p.add_argument("--slow-ms", type=float, default=200, help="the slow receiver's delay (default 200)")
    p.add_argument("--lag-rate", type=float, default=100, help="events per second in the lag measurement")
    p.add_argument("--drain-timeout", type=float, default=180, help="the longest wait for deliveries (s)")
    p.add_argument("--parts", default="writes,deliveries,lag", help="which measurements (default: all three)")
    p.add_argument("--data-dir", type=Path, default=DATA, help="where the databases and logs go (bench/.data)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--json", type=Path, help="default: BENCHMARKS-writes-<database>.json")
    p.add_argument("--no-report", action="store_true", help="write only the JSON")
    p.add_argument("--setup", help=argparse.SUPPRESS)  # the child: build the database, print JSON
    p.add_argument("--make-backlog", type=int, help=argparse.SUPPRESS)  # the child: write N cycles
    return p.parse_args(argv)


# --- the children: the data layer, in a process of their own --------------------------------


def _configure():
    from sessions_api.core import db
    from sessions_api.core.settings import Settings

    db.configure(Settings.from_env())


def setup_child(spec: dict) -> dict:
    """Schema, fleet, organization, admin key and endpoints, through the data layer."""
    from sessions_api.models import Role, api_keys, devices, members, schema_version, tenancy, webhooks

    _configure()
    schema_version.ensure_current()
    for _ in range(spec["devices"]):
        devices.add_device("ios", "simulator", "iPhone 16", "18.0")
    user, _personal = tenancy.create_user("writer@example.com", "Bench Writer")
    organization = tenancy.create_organization("Writes")
    members.add_member(organization.id, user.id, Role.admin)
    key, secret = api_keys.create_key(user.id, organization.id, name="writes")
    principal = _principal(user.id, key.id, organization.id)
    endpoints = []
    for index in range(spec["endpoints"]):
        endpoint, _signing = webhooks.create_endpoint(principal, f"{spec['receiver']}/hook/{index}", HOOK_EVENTS, None)
        endpoints.append(str(endpoint.id))
    return {
        "secret": secret,
        "organization": str(organization.id),
        "user": str(user.id),
        "key": str(key.id),
        "endpoints": endpoints,
    }


def _principal(user_id, key_id, organization_id):
    from sessions_api.models import Role
    from sessions_api.models.api_keys import Principal

    return Principal(user_id, key_id, organization_id, Role.admin, organization_id)


def backlog_child(setup: dict, cycles: int) -> None:
    """`cycles` starts and releases through the data layer (the server is down: nothing sends)."""
    from sessions_api.models import leases, sessions

    _configure()
    principal = _principal(uuid.UUID(setup["user"]), uuid.UUID(setup["key"]), uuid.UUID(setup["organization"]))
    for _ in range(cycles):
        started = leases.start_session(principal, leases.DeviceWanted("ios"), render=sessions.session_document)
        leases.release_session(principal, uuid.UUID(started.body["id"]))


# --- the parent ------------------------------------------------------------------------------


def _child(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.writes", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.writes {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def fresh_database(args, name: str) -> str:

    base = args.database_url
    url = f"sqlite:///{args.data_dir / f'writes-{name}.db'}" if base is None else f"{base}_{name}"
    reset_database(url)
    return url


class Receiver:
    """bench.receiver in a process of its own, logging to a file."""

    def __init__(self, delay_ms: float, log_dir: Path) -> None:
        self.port = free_port()
        self.log = log_dir / f"receiver-{self.port}.tsv"
        self.log.write_text("")
        env = {**os.environ, "BENCH_RECEIVER_DELAY_MS": str(delay_ms), "BENCH_RECEIVER_LOG": str(self.log)}
        command = [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url + "/ready", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arrivals(self) -> list[list[str]]:
        rows = [line.split("\t") for line in self.log.read_text().splitlines()]
        return [row for row in rows if row[0].startswith("/hook/")]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def _server(name: str, url: str, workers: int, setup: dict, log_dir: Path, extra_env: dict | None = None) -> Server:
    headers = {"Authorization": f"Bearer {setup['secret']}", "X-Organization-Id": setup["organization"]}
    env = {
        "SESSIONS_API_WEBHOOK_ALLOW_PRIVATE": "true",
        "SESSIONS_API_MAX_LIVE_SESSIONS": "100000",
        "SESSIONS_API_START_RATE_LIMIT": "60000000/minute",
        **(extra_env or {}),
    }
    return Server(name, url, workers, log_dir, f"{API}/sessions?limit=1", headers, env=env)


async def _cycles(base_url: str, setup: dict, seconds: float, concurrency: int, rate: float | None = None) -> dict:
    """Start + release cycles for `seconds` (paced to `rate` cycles/s in all, if given)."""
    headers = {"Authorization": f"Bearer {setup['secret']}", "X-Organization-Id": setup["organization"]}
    counts = {"cycles": 0, "unexpected": 0, "replays_checked": 0}
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    interval = concurrency / rate if rate else 0.0

    async def one_client(client: httpx.AsyncClient, offset: float) -> None:
        next_at = time.monotonic() + offset
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            key = {"Idempotency-Key": uuid.uuid4().hex}
            started = await client.post(f"{API}/sessions", json={"platform": "ios"}, headers=key)
            statuses[f"start {started.status_code}"] = statuses.get(f"start {started.status_code}", 0) + 1
            if started.status_code != 201:
                counts["unexpected"] += 1
                continue
            session_id = started.json()["id"]
            if counts["cycles"] % 50 == 0:  # the key replays the same session, starting none
                again = await client.post(f"{API}/sessions", json={"platform": "ios"}, headers=key)
                counts["replays_checked"] += 1
                if again.status_code != 201 or again.json()["id"] != session_id:
                    counts["unexpected"] += 1
            released = await client.post(f"{API}/sessions/{session_id}/release")
            statuses[f"release {released.status_code}"] = statuses.get(f"release {released.status_code}", 0) + 1
            if released.status_code != 200:
                counts["unexpected"] += 1
                continue
            counts["cycles"] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as client:
        began = time.monotonic()
        await asyncio.gather(*(one_client(client, i * interval / concurrency) for i in range(concurrency)))
        elapsed = time.monotonic() - began
    return {**counts, "seconds": elapsed, "cycles_per_s": counts["cycles"] / elapsed, "statuses": statuses}


def double_leases(url: str, organization: str) -> int:
    """Sessions that started on a device before the previous session on it ended."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    query = text(
        "SELECT count(*) FROM (SELECT created_at, LAG(released_at) OVER (PARTITION BY device_id ORDER BY created_at) "
        "AS previous_end, LAG(id) OVER (PARTITION BY device_id ORDER BY created_at) AS previous_id FROM sessions) s "
        "WHERE previous_id IS NOT NULL AND (previous_end IS NULL OR previous_end > created_at)"
    )
    try:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def durable_rows(url: str) -> dict[str, int]:
    """The rows of the session changes' durable work: sessions, audit rows, events, outbox rows."""
    from sqlalchemy import create_engine, text

    counts = {
        "sessions": "SELECT count(*) FROM sessions",
        "audit": "SELECT count(*) FROM audit_events WHERE target_kind = 'session'",
        "events": "SELECT count(*) FROM events WHERE category = 'session'",
        "outbox": "SELECT count(*) FROM webhook_deliveries",
    }
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {name: int(conn.execute(text(query)).scalar_one()) for name, query in counts.items()}
    finally:
        engine.dispose()


def outbox_events(url: str) -> set[tuple[str, str]]:
    """Every (endpoint, event) the outbox holds."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT endpoint_id, event_id FROM webhook_deliveries")).all()
    finally:
        engine.dispose()
    return {(uuid.UUID(str(endpoint)).hex, uuid.UUID(str(event)).hex) for endpoint, event in rows}


def _arrived(receiver: Receiver, setup: dict) -> list[tuple[str, str]]:
    by_path = {f"/hook/{index}": uuid.UUID(e).hex for index, e in enumerate(setup["endpoints"])}
    return [(by_path[row[0]], uuid.UUID(row[1]).hex) for row in receiver.arrivals() if row[0] in by_path]


def wait_for(receiver: Receiver, setup: dict, expected: int, timeout: float) -> float:
    """Seconds until `expected` deliveries arrived (or the timeout passed)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout and len(_arrived(receiver, setup)) < expected:
        time.sleep(0.1)
    return time.monotonic() - began


# What is measured: (server, webhook endpoints subscribed). The peer writes what ours writes
# in each transaction (bench.core_writes) and sends nothing; ours also sends the deliveries.
WRITERS = {
    "ours": ("ours", 2),
    "fastapi": ("fastapi", 2),
    "ours_no_webhooks": ("ours", 0),
    "fastapi_no_webhooks": ("fastapi", 0),
}


def measure_writes(args, workers: int, log) -> dict:
    by_server = {}
    for name, (server_name, endpoints) in WRITERS.items():
        url = fresh_database(args, f"{name}_w{workers}")
        receiver = Receiver(0, args.data_dir / "run")
        spec = {"devices": args.devices, "endpoints": endpoints, "receiver": receiver.url}
        setup = json.loads(_child(url, "--setup", json.dumps(spec)))
        server = _server(server_name, url, workers, setup, args.data_dir / "run")
        try:
            server.start()
            cpu_before = server.cpu_seconds()
            result = asyncio.run(_cycles(server.base_url, setup, args.duration, args.concurrency))
            result["cpu_ms_per_cycle"] = 1000 * (server.cpu_seconds() - cpu_before) / max(1, result["cycles"])
            if endpoints and server_name == "ours":
                expected = outbox_events(url)
                result["drain_s"] = wait_for(receiver, setup, len(expected), args.drain_timeout)
                arrived = _arrived(receiver, setup)
                result["events"] = len(expected)
                result["lost_events"] = len(expected - set(arrived))
                result["duplicate_arrivals"] = len(arrived) - len(set(arrived))
        finally:
            server.stop()
            receiver.stop()
        result["double_leases"] = double_leases(url, setup["organization"])
        written = durable_rows(url)
        cycles = max(1, written.pop("sessions"))
        result["rows_per_cycle"] = {table: round(count / cycles, 2) for table, count in written.items()}
        by_server[name] = result
        log(
            f"writes, {workers} worker(s), {name:16s}: {result['cycles_per_s']:7.1f} cycles/s "
            f"cpu {result['cpu_ms_per_cycle']:.2f} ms/cycle, unexpected {result['unexpected']}, "
            f"double leases {result['double_leases']}, lost events {result.get('lost_events', '-')}"
        )
    by_server["ratio"] = by_server["ours"]["cycles_per_s"] / by_server["fastapi"]["cycles_per_s"]
    by_server["ratio_no_webhooks"] = (
        by_server["ours_no_webhooks"]["cycles_per_s"] / by_server["fastapi_no_webhooks"]["cycles_per_s"]
    )
    by_server["cpu_ratio"] = by_server["fastapi"]["cpu_ms_per_cycle"] / by_server["ours"]["cpu_ms_per_cycle"]
    by_server["cpu_ratio_no_webhooks"] = (
        by_server["fastapi_no_webhooks"]["cpu_ms_per_cycle"] / by_server["ours_no_webhooks"]["cpu_ms_per_cycle"]
    )
    return by_server


def measure_deliveries(args, workers: int, delay_ms: float, log) -> dict:
    url = fresh_database(args, f"deliveries_w{workers}")
    receiver = Receiver(delay_ms, args.data_dir / "run")
    events = args.backlog if delay_ms == 0 else max(200, int(args.backlog / 5))
    try:
        setup = json.loads(
            _child(url, "--setup", json.dumps({"devices": args.devices, "endpoints": 1, "receiver": receiver.url}))
        )
        _child(url, "--make-backlog", str(events // 2), "--setup", json.dumps(setup))
        server = _server("ours", url, workers, setup, args.data_dir / "run")
        try:
            server.start()
            waited = wait_for(receiver, setup, events, args.drain_timeout)
        finally:
            server.stop()
        times = sorted(float(row[4]) for row in receiver.arrivals())
    finally:
        receiver.stop()
    arrived = len(times)
    span = times[-1] - times[0] if arrived > 1 else float("nan")
    # The ceiling of an endpoint's adaptive window (SESSIONS_API_WEBHOOK_ENDPOINT_CONCURRENCY's
    # default), per process: the most a receiver answering after `delay_ms` could get.
    concurrency = 16
    allowed = concurrency * workers / (delay_ms / 1000) if delay_ms else None
    result = {
        "events": events,
        "arrived": arrived,
        "events_per_s": (arrived - 1) / span if arrived > 1 else 0.0,
        "waited_s": waited,
        "allowed_per_s": allowed,
    }
    log(
        f"deliveries, {workers} worker(s), receiver {delay_ms:g} ms: {result['events_per_s']:.1f} events/s "
        f"({arrived}/{events} arrived" + (f"; the ceiling allows {allowed:.0f}/s)" if allowed else ")")
    )
    return result


def measure_lag(args, workers: int, log) -> dict:
    url = fresh_database(args, f"lag_w{workers}")
    receiver = Receiver(0, args.data_dir / "run")
    try:
        setup = json.loads(
            _child(url, "--setup", json.dumps({"devices": args.devices, "endpoints": 1, "receiver": receiver.url}))
        )
        server = _server("ours", url, workers, setup, args.data_dir / "run")
        try:
            server.start()
            cycles = asyncio.run(_cycles(server.base_url, setup, args.duration, 8, rate=args.lag_rate / 2))
            expected = len(outbox_events(url))
            wait_for(receiver, setup, expected, args.drain_timeout)
        finally:
            server.stop()
        rows = receiver.arrivals()
    finally:
        receiver.stop()
    lags = sorted(float(row[4]) - datetime.fromisoformat(row[3]).timestamp() for row in rows)
    result = {
        "events_per_s": 2 * cycles["cycles_per_s"],
        "events": expected,
        "arrived": len(lags),
        "lag_p50_ms": 1000 * lags[len(lags) // 2] if lags else None,
        "lag_p99_ms": 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
    }
    log(
        f"lag, {workers} worker(s), {result['events_per_s']:.0f} events/s: "
        f"p50 {result['lag_p50_ms']:.0f} ms, p99 {result['lag_p99_ms']:.0f} ms ({len(lags)}/{expected} arrived)"
    )
    return result


def summarize(results: dict) -> None:
    targets = []
    for workers, measured in results.get("writes", {}).items():
        for label, key in (("two endpoints", "ratio"), ("no webhooks", "ratio_no_webhooks")):
            targets.append(
                {
                    "target": f"writes, {workers} worker(s), {label}: ours ≥ {WRITES_TARGET} × FastAPI like for like",
                    "value": round(measured[key], 3),
                    "met": measured[key] >= WRITES_TARGET,
                }
            )
        problems = sum(measured[n]["double_leases"] + measured[n]["unexpected"] for n in WRITERS)
        problems += measured["ours"]["lost_events"] + measured["ours"]["duplicate_arrivals"]
        targets.append(
            {
                "target": f"writes, {workers} worker(s): zero double leases, lost events, unexpected answers",
                "value": problems,
                "met": problems == 0,
            }
        )
    for key, measured in results.get("deliveries", {}).items():
        workers, delay = key.split("/")
        if delay == "0" and workers == "2":
            targets.append(
                {
                    "target": "deliveries at 0 ms, 2 workers: ≥ 500 events/s",
                    "value": round(measured["events_per_s"], 1),
                    "met": measured["events_per_s"] >= 500,
                }
            )
    for workers, measured in results.get("lag", {}).items():
        p99 = measured["lag_p99_ms"] or float("inf")
        targets.append(
            {
                "target": f"lag at {measured['events_per_s']:.0f} events/s, {workers} worker(s): p99 < 2 s",
                "value": round(p99),
                "met": p99 < 2000 and measured["arrived"] == measured["events"],
            }
        )
    results["targets"] = targets


def render(results: dict) -> str:
    out = [f"Run of {results['started_at']} (commit `{results['commit']}`): `{results['command']}`.\n"]
    if results.get("writes"):
        out.append(
            "| workers | server | cycles/s | CPU ms/cycle | audit, event, outbox rows per cycle "
            "| double leases | events lost / twice |"
        )
        out.append("| ---: | --- | ---: | ---: | --- | ---: | ---: |")
        for workers, measured in results["writes"].items():
            for name in WRITERS:
                m = measured[name]
                lost = f"{m['lost_events']} / {m['duplicate_arrivals']} of {m['events']}" if "events" in m else "—"
                rows = m.get("rows_per_cycle", {})
                written = ", ".join(f"{rows.get(table, 0):g}" for table in ("audit", "events", "outbox"))
                out.append(
                    f"| {workers} | {name} | {m['cycles_per_s']:.1f} | {m['cpu_ms_per_cycle']:.2f} | {written} | "
                    f"{m['double_leases']} | {lost} |"
                )
        out.append("")
    if results.get("deliveries"):
        out.append("| workers | receiver answers after | events/s | arrived | the window's ceiling allows |")
        out.append("| ---: | ---: | ---: | ---: | ---: |")
        for key, m in results["deliveries"].items():
            workers, delay = key.split("/")
            allowed = f"{m['allowed_per_s']:.0f}/s" if m["allowed_per_s"] else "—"
            out.append(
                f"| {workers} | {delay} ms | {m['events_per_s']:.1f} | {m['arrived']}/{m['events']} | {allowed} |"
            )
        out.append("")
    if results.get("lag"):
        out.append("| workers | events/s | lag p50 ms | lag p99 ms | arrived |")
        out.append("| ---: | ---: | ---: | ---: | ---: |")
        for workers, m in results["lag"].items():
            out.append(
                f"| {workers} | {m['events_per_s']:.0f} | {m['lag_p50_ms']:.0f} | {m['lag_p99_ms']:.0f} | "
                f"{m['arrived']}/{m['events']} |"
            )
        out.append("")
    out.append("| target | measured | met |\n| --- | ---: | :---: |")
    for t in results["targets"]:
        out.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup and args.make_backlog is None:
        print(json.dumps(setup_child(json.loads(args.setup))))
        return 0
    if args.make_backlog is not None:
        backlog_child(json.loads(args.setup), args.make_backlog)
        return 0

    began = time.monotonic()

    def log(message: str) -> None:
        print(f"[writes {time.monotonic() - began:7.1f}s] {message}", flush=True)

    (args.data_dir / "run").mkdir(parents=True, exist_ok=True)
    kind = "postgresql" if (args.database_url or "").startswith("postgresql") else "sqlite"
    parts = set(args.parts.split(","))
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    results: dict = {
        "started_at": now(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.writes", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "writes": {},
        "deliveries": {},
        "lag": {},
    }
    for workers in worker_counts:
        if "writes" in parts:
            results["writes"][str(workers)] = measure_writes(args, workers, log)
        if "deliveries" in parts:
            for delay in (0, args.slow_ms):
                results["deliveries"][f"{workers}/{delay:g}"] = measure_deliveries(args, workers, delay, log)
        if "lag" in parts:
            results["lag"][str(workers)] = measure_lag(args, workers, log)
    summarize(results)
    json_path = args.json or ROOT / f"BENCHMARKS-writes-{kind}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not args.no_report:
        report.write_section(args.output, f"writes:{kind}", render(results))
    log(f"wrote {json_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
