"""CPU per request of each server's ASGI app, called in-process, side by side.

`python -m bench.inprocess [--sessions N] [--concurrency 16] [--servers ours,floor] ...`

No HTTP and no load generator: each app is imported and called with ASGI messages, one
request at a time or `--concurrency` at once, and the process's CPU time (all threads) is
divided by the requests. That leaves out uvicorn's HTTP parsing and the network, and
depends far less than wrk's requests/s on what else a shared machine is doing, so it is the
quick loop for work on the hot path; `bench.run` remains the measurement of record.

Each app runs in a child process of its own (the reference declares the same tables under
its own SQLModel classes, which cannot share a process with ours). It uses the data
`bench.run` built (run that first, e.g. with `--check-only`). To see where the time goes,
sample one child with py-spy, which sees the worker threads too (cProfile would not):
`py-spy record -f raw -o out.txt -- python -m bench.inprocess --one ours --concurrency 16`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.environment import DATA
from bench.run import WORKLOADS, default_database_url, manifest_path, workloads
from bench.servers import APPS, SERVERS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1_000_000, help="which built dataset (default 1,000,000)")
    p.add_argument("--database-url", help="default: the SQLite file bench.run builds for --sessions")
    p.add_argument("--data-dir", type=Path, default=DATA, help="where bench.run keeps the build's manifest")
    p.add_argument("--requests", type=int, default=2000, help="requests measured per workload (default 2000)")
    p.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (default 1; wrk's runs use 16)"
    )
    p.add_argument("--servers", default=",".join(SERVERS), help=f"of {', '.join([*SERVERS, *VARIANTS])} ({VARIANTS})")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each server this many times, taking turns, and report the median (for a busy machine)",
    )
    p.add_argument(
        "--one", choices=[*SERVERS, *VARIANTS], help=argparse.SUPPRESS
    )  # the child: measure this app, print JSON
    return p.parse_args(argv)


# Our app with some of what it does on every request changed, to measure what that costs:
# (what it is, settings changed, whether the body limit's middleware stays).
VARIANTS = {
    "ours-bare": ("ours without the request metrics and the body limit", {"metrics": False}, False),
    "ours-unlimited": (
        "ours without rate limits",
        {
            "rate_limit": "off",
            "rate_limit_per_user": "off",
            "rate_limit_per_organization": "off",
            "auth_failure_limit": "off",
        },
        True,
    ),
    "ours-redis": (
        "ours counting rate limits in Redis (127.0.0.1:6379)",
        {"rate_limit_storage": "redis://127.0.0.1:6379/0", "rate_limit_key_prefix": "bench"},
        True,
    ),
}


def load_app(name: str, database_url: str):
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("SESSIONS_API_VALIDATE_RESPONSES", None)
    if name == "ours" or name in VARIANTS:
        return _our_app(name)
    return importlib.import_module(APPS[name].split(":")[0]).app


def _our_app(name: str):
    from bench.servers import OURS_ENV
    from sessions_api.core.settings import Settings
    from sessions_api.web.app import create_app
    from sessions_api.web.body_limit import BodyLimitMiddleware

    os.environ.update({key: value for key, value in OURS_ENV.items() if key not in os.environ})
    _, changes, body_limit = VARIANTS.get(name, ("ours", {}, True))
    app = create_app(Settings.from_env().replace(**changes))
    if not body_limit:  # Connexion keeps the middlewares to build as partials until the app starts
        stack = app.middlewares
        stack[:] = [middleware for middleware in stack if getattr(middleware, "func", None) is not BodyLimitMiddleware]
    return app


class AsgiCaller:
    """Calls an ASGI app with GET requests and its lifespan events, as a server would."""

    def __init__(self, app) -> None:
        self.app = app
        self._lifespan: asyncio.Task | None = None
        self._lifespan_queue: asyncio.Queue = asyncio.Queue()

    async def start(self) -> None:
        started = asyncio.Event()

        async def receive():
            return await self._lifespan_queue.get()

        async def send(message):
            if message["type"].startswith("lifespan.startup"):
                started.set()

        await self._lifespan_queue.put({"type": "lifespan.startup"})
        self._lifespan = asyncio.create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
        await asyncio.wait_for(started.wait(), 60)

    async def stop(self) -> None:
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._lifespan, 30)

    async def get(self, target: str, headers: dict) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        status, body = 0, bytearray()

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, bytes(body)


async def measure(caller: AsgiCaller, workload, requests: int, concurrency: int) -> dict:
    targets = workload.paths
    sent = 0
    unexpected = 0

    async def client() -> None:  # a closed loop, as one wrk connection
        nonlocal sent, unexpected
        while sent < requests:
            target = targets[sent % len(targets)]
            sent += 1
            status, _ = await caller.get(target, workload.headers)
            unexpected += status != workload.expect

    for i in range(min(200, requests)):  # warm-up: caches, pools, lazily built middleware
        await caller.get(targets[i % len(targets)], workload.headers)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms": 1000 * cpu / requests, "wall_ms": 1000 * wall / requests, "unexpected": unexpected}


async def measure_one(name: str, args) -> dict:
    url = args.database_url or default_database_url(args.sessions, args.data_dir)
    manifest = json.loads(manifest_path(args.data_dir, url).read_text())
    ids = [line for line in Path(manifest["ids"]).read_text().split() if line]
    loads = workloads(manifest, ids)
    caller = AsgiCaller(load_app(name, url))
    await caller.start()
    results = {
        key: await measure(caller, loads[key], args.requests, args.concurrency) for key in args.workloads.split(",")
    }
    await caller.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(asyncio.run(measure_one(args.one, args))))
        return 0
    runs: dict[str, dict[str, list[dict]]] = {}
    for _ in range(args.repeat):
        for name in args.servers.split(","):
            child = [
                sys.executable,
                "-m",
                "bench.inprocess",
                "--one",
                name,
                *(argv if argv is not None else sys.argv[1:]),
            ]
            done = subprocess.run(child, capture_output=True, text=True, timeout=1800)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            for key, measured in json.loads(done.stdout.strip().splitlines()[-1]).items():
                runs.setdefault(key, {}).setdefault(name, []).append(measured)
    results = {key: {name: _median(measured) for name, measured in by_name.items()} for key, by_name in runs.items()}
    servers = args.servers.split(",")
    peers = [s for s in servers if s != "ours" and "ours" in servers]
    print(
        "CPU ms per request (wall ms per request); ours/peer: the peer's CPU per request over ours, "
        "read like a requests/s ratio"
    )
    print(f"{'workload':<14}" + "".join(f"{s:>24}" for s in servers) + "".join(f"{'ours/' + p:>16}" for p in peers))
    for key, by_server in results.items():
        cells = "".join(
            f"{by_server[s]['cpu_ms']:>13.3f}{'(' + format(by_server[s]['wall_ms'], '.3f') + ')':>11}" for s in servers
        )
        ratios = "".join(f"{by_server[p]['cpu_ms'] / by_server['ours']['cpu_ms']:>16.2f}" for p in peers)
        bad = sum(r["unexpected"] for r in by_server.values())
        print(f"{key:<14}{cells}{ratios}" + (f"   UNEXPECTED STATUSES: {bad}" if bad else ""))
    return 1 if any(r["unexpected"] for by in results.values() for r in by.values()) else 0


def _median(runs: list[dict]) -> dict:
    """The run with the median CPU per request (its wall time with it); unexpected statuses summed."""
    middle = sorted(runs, key=lambda run: run["cpu_ms"])[len(runs) // 2]
    return {**middle, "unexpected": sum(run["unexpected"] for run in runs)}


if __name__ == "__main__":
    sys.exit(main())
