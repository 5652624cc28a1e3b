"""Event streams on PostgreSQL: the time from a change's commit to its Server-Sent Event with
two workers, how many open streams one worker holds and at what memory, and what 1,000 open
streams cost the reads beside them.

`python -m bench.streams [--database-url postgresql+psycopg://.../bench_streams] [--seconds S]
[--streams N]` (re)creates the database (its name must start with `bench`), starts
`sessions-api serve`, and prints JSON:
- latency: a stream follows while writers start and release sessions at about 100 events/s
  through both workers for S seconds; each event's delay is the message's arrival minus the
  moment its write was answered (after its commit), so it is slightly understated; p50, p99;
- memory: one worker with N streams open (the wait limits raised for the run): its RSS before
  and after, per stream;
- reads: `GET /sessions?limit=1` from 4 client threads for S seconds, without and with the N
  streams open (requests/s, p50 ms).
Everything runs on 127.0.0.1; every loop is bounded by its seconds or its count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

from bench.environment import DATA, reset_database
from bench.servers import OURS_ENV, cli_json, serve_ours, sessions_api_command
from tests.support.transfers import ProcessWatch

API = "/api/v1"
DEVICES = 40


def _prepare(env: dict[str, str]) -> str:
    subprocess.run([*sessions_api_command(), "db", "upgrade"], env=env, check=True, capture_output=True)
    user = cli_json(env, "user", "create", "--email", "streamer@example.com")
    for n in range(DEVICES):
        cli_json(
            env,
            "device",
            "add",
            "--platform",
            "android",
            "--type",
            "emulator",
            "--name",
            f"Pixel {n}",
            "--os-version",
            "15",
        )
    return cli_json(env, "key", "create", "--user", user["id"])["secret"]


def _serve(env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    process, origin = serve_ours(env, log, workers)
    return process, origin + API


def _latency(base: str, secret: str, seconds: float) -> dict:
    headers = {"Authorization": f"Bearer {secret}"}
    answered: dict[tuple[str, str], float] = {}  # (session id, event type) -> when its write was answered
    arrived: dict[tuple[str, str], float] = {}

    def follow() -> None:
        with (
            contextlib.suppress(httpx.RemoteProtocolError),
            httpx.stream(  # cut when the server stops
                "GET", f"{base}/events", headers={**headers, "Accept": "text/event-stream"}, timeout=seconds + 30
            ) as stream,
        ):
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    arrived[(json.loads(line[6:])["data"]["id"], kind)] = time.perf_counter()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(1.0)
    ends = time.monotonic() + seconds

    def write() -> None:
        client = httpx.Client(headers=headers, timeout=30)  # keep-alive: one worker per writer, mostly
        while time.monotonic() < ends:
            began = time.perf_counter()
            started = client.post(f"{base}/sessions", json={"platform": "android"}).json()
            answered[(started["id"], "session.started")] = time.perf_counter()
            client.post(f"{base}/sessions/{started['id']}/release")
            answered[(started["id"], "session.released")] = time.perf_counter()
            time.sleep(max(0.0, 0.06 - (time.perf_counter() - began)))  # 3 writers, ~50 cycles/s: 100 events/s

    writers = [threading.Thread(target=write) for _ in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    time.sleep(1.0)
    delays = sorted((arrived[key] - at) * 1000 for key, at in answered.items() if key in arrived)
    return {
        "events_written": len(answered),
        "events_received": len(delays),
        "events_per_second": len(answered) / seconds,
        "p50_ms": statistics.median(delays),
        "p99_ms": delays[min(len(delays) - 1, int(0.99 * len(delays)))],
    }


async def _hold_streams(base: str, secret: str, count: int, opened: asyncio.Event, stop: asyncio.Event) -> int:
    host, port = base.split("//")[1].split("/")[0].split(":")
    request = (
        f"GET {API}/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        held.append((reader, writer))
    ok = 0
    for reader, _writer in held:
        head = await asyncio.wait_for(reader.readuntil(b"retry: 3000"), 30)
        ok += head.startswith(b"HTTP/1.1 200")
    opened.set()
    await stop.wait()
    for _reader, writer in held:
        writer.close()
    return ok


def _reads(base: str, secret: str, seconds: float) -> dict:
    latencies: list[float] = []
    ends = time.monotonic() + seconds

    def loop() -> None:
        client = httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        while time.monotonic() < ends:
            began = time.perf_counter()
            client.get(f"{base}/sessions", params={"limit": 1}).raise_for_status()
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests_per_second": len(latencies) / seconds, "p50_ms": statistics.median(latencies) * 1000}


def _with_streams(base: str, secret: str, count: int, pid: int, seconds: float) -> dict:
    """Open `count` streams on the worker, measure its memory and the reads beside them."""
    loop = asyncio.new_event_loop()
    opened, stop = asyncio.Event(), asyncio.Event()
    watch = ProcessWatch(pid)
    before = watch.rss()
    holder = threading.Thread(
        target=lambda: result.update(ok=loop.run_until_complete(_hold_streams(base, secret, count, opened, stop)))
    )
    result: dict = {}
    holder.start()
    while not opened.is_set():
        time.sleep(0.1)
    time.sleep(1.0)
    after = watch.rss()
    reads = _reads(base, secret, seconds)
    loop.call_soon_threadsafe(stop.set)
    holder.join(60)
    return {
        "streams_open": result.get("ok"),
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_stream": (after - before) / 1024 / count,
        "reads_beside_them": reads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/bench_streams")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    reset_database(args.database_url)
    DATA.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **OURS_ENV,
        "DATABASE_URL": args.database_url,
        "SESSIONS_API_START_RATE_LIMIT": "60000000/minute",
        "SESSIONS_API_MAX_LIVE_SESSIONS": str(DEVICES),
        "SESSIONS_API_MAX_WAITS_PER_KEY": str(args.streams),
        "SESSIONS_API_MAX_WAITS_PER_ORGANIZATION": str(args.streams),
        "SESSIONS_API_STREAM_MAX_SECONDS": "3600",
    }
    secret = _prepare(env)
    results: dict = {}
    # The follower's stream ends by itself soon after the writes (a stopping server waits for
    # open streams up to its graceful timeout).
    following = {**env, "SESSIONS_API_STREAM_MAX_SECONDS": str(args.seconds + 3)}
    process, base = _serve(following, 2, DATA / "streams-w2.log")
    try:
        results["latency_two_workers"] = _latency(base, secret, args.seconds)
    finally:
        _stop(process)
    process, base = _serve(env, 1, DATA / "streams-w1.log")
    try:
        time.sleep(1.0)
        results["reads_alone"] = _reads(base, secret, args.seconds)
        results["streams_on_one_worker"] = _with_streams(base, secret, args.streams, process.pid, args.seconds)
    finally:
        _stop(process)
    print(json.dumps(results, indent=2))


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


if __name__ == "__main__":
    main()
