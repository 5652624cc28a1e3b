"""Heavy reads beside everyone else: another organization's `GET /sessions?limit=1`, alone and
beside two clients that loop the largest usage report one admin may ask for (1,000 daily
buckets over the big organization's history), against one server process.

`python -m bench.heavy_reads [--database-url URL] [--sessions N] [--seconds S]` builds (or
reuses) the benchmark's data (`bench.run`'s, the same seed), starts `sessions-api serve` with
one worker, and prints JSON: the neighbour's p50 and p99 in both phases, their ratio, the
reports made (and refused with 429) and their median, and the server's CPU per neighbour
request. Every loop is bounded by its phase's seconds; the server is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench.dataset import END, default_params
from bench.environment import DATA
from bench.run import ensure_data
from bench.servers import Server

API = "/api/v1"
REPORT_DAYS = 1000  # the most buckets a report may hold
REPORT_CLIENTS = 2


def _get(url: str, headers: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - started


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def _neighbour(base: str, manifest: dict, seconds: float) -> list[float]:
    """Another organization's one-session page, in a loop for `seconds`: each latency (s)."""
    headers = {"Authorization": f"Bearer {manifest['secret']}", "X-Organization-Id": manifest["second_organization"]}
    url, latencies = f"{base}{API}/sessions?limit=1", []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        status, took = _get(url, headers)
        if status != 200:
            raise SystemExit(f"bench: the neighbour got {status}")
        latencies.append(took)
    return latencies


def _reports(base: str, manifest: dict, stop: threading.Event, made: list[tuple[int, float]]) -> None:
    query = urllib.parse.urlencode(
        {
            "from": (END - timedelta(days=REPORT_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": END.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    url = f"{base}{API}/organizations/{manifest['big_organization']}/usage?{query}"
    headers = {"Authorization": f"Bearer {manifest['admin_secret']}"}
    while not stop.is_set():
        made.append(_get(url, headers))


def run(database_url: str, sessions: int, seconds: float, log_dir: Path) -> dict:
    manifest = ensure_data(database_url, default_params(sessions), False, lambda text: print(text, flush=True))
    server = Server(
        "ours",
        database_url,
        1,
        log_dir,
        f"{API}/sessions?limit=1",
        {"Authorization": f"Bearer {manifest['secret']}"},
    )
    server.start()
    try:
        base = server.base_url
        _neighbour(base, manifest, 2.0)  # warm up
        cpu_before = server.cpu_seconds()
        alone = _neighbour(base, manifest, seconds)
        cpu_alone = server.cpu_seconds() - cpu_before
        stop, made = threading.Event(), []
        clients = [threading.Thread(target=_reports, args=(base, manifest, stop, made)) for _ in range(REPORT_CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # both reports under way
        beside = _neighbour(base, manifest, seconds)
        stop.set()
        for client in clients:
            client.join(timeout=120)
    finally:
        server.stop()
    answered = [took for status, took in made if status == 200]
    return {
        "database": "sqlite" if database_url.startswith("sqlite") else "postgresql",
        "sessions": sessions,
        "seconds_per_phase": seconds,
        "neighbour_alone": {
            "requests": len(alone),
            "p50_ms": round(1000 * _percentile(alone, 0.5), 2),
            "p99_ms": round(1000 * _percentile(alone, 0.99), 2),
            "server_cpu_ms_per_request": round(1000 * cpu_alone / max(1, len(alone)), 3),
        },
        "neighbour_beside_reports": {
            "requests": len(beside),
            "p50_ms": round(1000 * _percentile(beside, 0.5), 2),
            "p99_ms": round(1000 * _percentile(beside, 0.99), 2),
        },
        "p99_ratio": round(_percentile(beside, 0.99) / _percentile(alone, 0.99), 2),
        "reports": {
            "clients": REPORT_CLIENTS,
            "answered": len(answered),
            "refused_429": sum(1 for status, _ in made if status == 429),
            "other": sorted({status for status, _ in made if status not in (200, 429)}),
            "median_ms": round(1000 * statistics.median(answered), 1) if answered else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=f"sqlite:///{DATA}/heavy.db",
        help="sqlite:///... or postgresql+psycopg://127.0.0.1:5432/bench...",
    )
    parser.add_argument("--sessions", type=int, default=200_000, help="sessions in the data (default 200,000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each phase loops (default 20)")
    args = parser.parse_args()
    log_dir = DATA / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(args.database_url, args.sessions, args.seconds, log_dir), indent=2))


if __name__ == "__main__":
    main()
