"""The size curve: our server at several history sizes, every read workload, side by side.

`python -m bench.run --sessions 200000,1000000,5000000 [--database-url ...]`

For each size it builds (or reuses) the data, starts our server with one worker, and drives
every read workload with wrk: the pages and the get of the main run, one workload per
listSessions filter and three usage reports (which the peers do not implement, so the curve
is ours alone). Then the
loop-sharing workload: getSession with 16 connections alone, and again while one more
client loops the most expensive list query of that size; the ratio is what the list costs
everyone else on the worker. It reports requests/s, p50 and p99 per workload and size, each
size's requests/s against the smallest's, and the import rate of each build.

On PostgreSQL each size gets its own database: `--database-url .../bench` becomes
`.../bench_200000` and so on.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from bench import report
from bench.dataset import default_params
from bench.load import Workload, run_wrk, write_script
from bench.servers import Server

API = "/api/v1"
# The filters of listSessions, one workload each (the page size of the main run).
FILTERS = ("list_live", "list_platform", "list_user", "list_user_none", "list_device", "list_device_platform")
PAGES = ("list100", "list100_deep", "list1", "get")
SHARING_TARGET = 0.8  # getSession keeps at least this share of its throughput
CURVE_TARGET = 1.25  # the largest size within this factor of the smallest, per workload


def database_url(base: str | None, size: int, default) -> str:
    """The database of one size: the default SQLite file, or the given PostgreSQL name + size."""
    if base is None:
        return default(size)
    if base.startswith("sqlite"):
        stem, dot, suffix = base.rpartition(".")
        return f"{stem}_{size}.{suffix}" if dot else f"{base}_{size}"
    return f"{base}_{size}"


def _get_json(base_url: str, path: str, headers: dict) -> dict:
    with urllib.request.urlopen(urllib.request.Request(base_url + path, headers=headers), timeout=30) as response:
        return json.loads(response.read())


def filter_workloads(server: Server, manifest: dict, ids: list[str]) -> dict[str, Workload]:
    """One workload per filter, its values read from one of the big organization's sessions."""
    auth = {"Authorization": f"Bearer {manifest['secret']}", "X-Organization-Id": manifest["big_organization"]}
    seen = _get_json(server.base_url, f"{API}/sessions/{ids[0]}", auth)
    user, device, platform = seen["user"], seen["device"]["id"], seen["device"]["platform"]
    page = f"{API}/sessions?limit=100"
    queries = {
        "list_live": ("status=live", "listSessions status=live"),
        "list_platform": (f"platform={platform}", f"listSessions platform={platform}"),
        "list_user": (f"user={user}", "listSessions user=<a member with sessions>"),
        "list_user_none": (f"user={uuid.UUID(int=1)}", "listSessions user=<an id with no sessions>"),
        "list_device": (f"device={device}", "listSessions device=<a device>"),
        "list_device_platform": (f"device={device}&platform={platform}", "listSessions device + platform"),
    }
    return {name: Workload(name, title, [f"{page}&{query}"], auth) for name, (query, title) in queries.items()}


# Usage (getUsage) over the last month of the data, which ends at dataset.END: its cost follows
# the sessions that ran in the range, which grow with the size (the data spans the same days).
USAGE_RANGE = "from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z"
USAGE_TARGET_MS = 1000  # p99 of a month's report, at every size
USAGE_CONNECTIONS = 2  # a report is an admin's: two at once, not a crowd


def usage_workloads(manifest: dict) -> dict[str, Workload]:
    auth = {"Authorization": f"Bearer {manifest['admin_secret']}"}
    path = f"{API}/organizations/{manifest['big_organization']}/usage?{USAGE_RANGE}"
    queries = {
        "usage_days": ("granularity=day", "getUsage, a month by day"),
        "usage_days_user": ("granularity=day&groupBy=user", "getUsage, a month by day and user"),
        "usage_month_platform": ("granularity=month&groupBy=platform", "getUsage, a month by platform"),
    }
    return {name: Workload(name, title, [f"{path}&{query}"], auth) for name, (query, title) in queries.items()}


def loop_sharing(server: Server, get_script: Path, hog_script: Path, seconds: float, connections: int) -> dict:
    """getSession alone, then while one client loops `hog_script`; requests/s of each."""
    alone = run_wrk(server.base_url, get_script, seconds=seconds, connections=connections)
    hog: dict = {}
    thread = threading.Thread(
        target=lambda: hog.update(run_wrk(server.base_url, hog_script, seconds=seconds + 2, connections=1))
    )
    thread.start()
    time.sleep(1)  # the hog is looping before the measurement starts
    shared = run_wrk(server.base_url, get_script, seconds=seconds, connections=connections)
    thread.join()
    return {
        "alone_rps": alone["rps"],
        "shared_rps": shared["rps"],
        "ratio": shared["rps"] / alone["rps"],
        "hog_rps": hog.get("rps"),
        "hog_p50_us": hog.get("p50_us"),
        "errors": alone["errors"] + shared["errors"] + hog.get("errors", 0),
    }


def run_curve(args, sizes: list[int], log, run_dir: Path) -> dict:
    """Measure every size; returns the results (written to JSON and BENCHMARKS.md by the caller)."""
    # bench.run calls this module; its data and workload functions are imported when called.
    from bench.run import default_database_url, ensure_data, probe_request, workloads

    results: dict = {"sizes": {}, "settings": {"duration_s": args.duration, "connections": args.connections}}
    for size in sizes:
        url = database_url(args.database_url, size, lambda n: default_database_url(n, args.data_dir))
        manifest = ensure_data(url, default_params(size), args.rebuild, log, args.data_dir)
        ids = [line for line in Path(manifest["ids"]).read_text().split() if line]
        probe = probe_request(manifest)
        server = Server("ours", url, 1, run_dir, probe[0], probe[1])
        entry: dict = {
            "database": url.split("@")[-1],
            "import_seconds": manifest["import_seconds"],
            "import_rate": manifest["import_rate"],
            "big_organization_sessions": manifest["big_organization_sessions"],
            "workloads": {},
        }
        try:
            server.start()
            loads = {name: load for name, load in workloads(manifest, ids).items() if name in PAGES}
            loads.update(filter_workloads(server, manifest, ids))
            loads.update(usage_workloads(manifest))
            # One pass over every id the get workload reads, so that each size is measured warm
            # (a short warm-up reaches only part of a large file's pages).
            pass_seconds = len(ids) / 500
            run_wrk(server.base_url, write_script(loads["get"], run_dir), seconds=pass_seconds, connections=4)
            for name, load in loads.items():
                script = write_script(load, run_dir)
                connections = USAGE_CONNECTIONS if name.startswith("usage") else args.connections
                if args.warmup > 0:
                    run_wrk(server.base_url, script, seconds=args.warmup, connections=connections)
                result = run_wrk(server.base_url, script, seconds=args.duration, connections=connections)
                entry["workloads"][name] = {"title": load.title, **_summary(result)}
                log(
                    f"{size:>9,} {name:22s} {result['rps']:8.0f} req/s p50 {result['p50_us'] / 1000:6.2f}ms "
                    f"p99 {result['p99_us'] / 1000:6.2f}ms unexpected {result['errors']}"
                )
            lists = [n for n in entry["workloads"] if n.startswith("list")]
            hog = max(lists, key=lambda n: entry["workloads"][n]["p50_us"])
            sharing = loop_sharing(
                server,
                write_script(loads["get"], run_dir),
                write_script(loads[hog], run_dir),
                args.duration,
                args.connections,
            )
            entry["loop_sharing"] = {"hog": hog, "hog_title": loads[hog].title, **sharing}
            log(f"{size:>9,} getSession beside a client looping {hog}: {sharing['ratio']:.0%} of alone")
        finally:
            server.stop()
        results["sizes"][str(size)] = entry
    summarize(results)
    return results


def _summary(result: dict) -> dict:
    keep = ("rps", "p50_us", "p99_us", "errors", "requests")
    return {key: result[key] for key in keep}


def summarize(results: dict) -> None:
    """Each size against the smallest, per workload, and the targets."""
    sizes = list(results["sizes"])
    smallest = results["sizes"][sizes[0]]["workloads"]
    targets = []
    for size in sizes[1:]:
        for name, measured in results["sizes"][size]["workloads"].items():
            slowdown = smallest[name]["rps"] / measured["rps"]
            measured["slowdown"] = slowdown
            if size == sizes[-1] and not name.startswith("usage"):
                targets.append(
                    {
                        "target": f"{int(size):,} within {CURVE_TARGET} × of {int(sizes[0]):,}: {name}",
                        "value": round(slowdown, 3),
                        "met": slowdown <= CURVE_TARGET,
                    }
                )
    for size, entry in results["sizes"].items():
        for name, measured in entry["workloads"].items():
            if name.startswith("usage"):
                p99_ms = measured["p99_us"] / 1000
                targets.append(
                    {
                        "target": f"{int(size):,}: {measured['title']}, p99 ≤ {USAGE_TARGET_MS} ms",
                        "value": round(p99_ms, 1),
                        "met": p99_ms <= USAGE_TARGET_MS,
                    }
                )
    for size, entry in results["sizes"].items():
        ratio = entry["loop_sharing"]["ratio"]
        targets.append(
            {
                "target": f"{int(size):,}: getSession beside the worst list ≥ {SHARING_TARGET:.0%} of alone",
                "value": round(ratio, 3),
                "met": ratio >= SHARING_TARGET,
            }
        )
    errors = sum(w["errors"] for e in results["sizes"].values() for w in e["workloads"].values()) + sum(
        e["loop_sharing"]["errors"] for e in results["sizes"].values()
    )
    targets.append({"target": "zero unexpected statuses and socket errors", "value": errors, "met": errors == 0})
    results["targets"] = targets


def render(results: dict) -> str:
    sizes = list(results["sizes"])
    head = " | ".join(f"{int(s):,}" for s in sizes)
    out = [f"Run of {results['started_at']} (commit `{results['commit']}`): `{results['command']}`.\n"]
    out.append(
        f"wrk: {results['settings']['connections']} connections, {results['settings']['duration_s']:g} s per "
        f"workload and size (getUsage: {USAGE_CONNECTIONS} connections), one worker. Cells: requests/s, "
        "p50 / p99 ms; each size's requests/s against the first's in brackets (× slower).\n"
    )
    out.append(f"| workload | {head} |\n| --- |" + " ---: |" * len(sizes))
    first = results["sizes"][sizes[0]]["workloads"]
    for name, measured in first.items():
        cells = []
        for size in sizes:
            m = results["sizes"][size]["workloads"][name]
            slowdown = f" ({m['slowdown']:.2f} ×)" if "slowdown" in m else ""
            cells.append(f"{m['rps']:,.0f}{slowdown}, {m['p50_us'] / 1000:.2f} / {m['p99_us'] / 1000:.2f}")
        out.append(f"| {measured['title']} | " + " | ".join(cells) + " |")
    sharing = [results["sizes"][s]["loop_sharing"] for s in sizes]
    out.append(
        "| getSession beside one client looping the worst list (share of alone) | "
        + " | ".join(f"{s['ratio']:.0%} (beside {s['hog']})" for s in sharing)
        + " |"
    )
    out.append(
        "| import (`sessions-api session import`), lines/s | "
        + " | ".join(f"{results['sizes'][s]['import_rate']:,.0f}" for s in sizes)
        + " |"
    )
    out.append("\n| target | measured | met |\n| --- | ---: | :---: |")
    for t in results["targets"]:
        out.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(out) + "\n"


def write_markdown(results: dict, path: Path, kind: str) -> None:
    report.write_section(path, f"curve:{kind}", render(results))
