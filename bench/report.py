"""From the raw results to the summary (best round, ratios, targets) and BENCHMARKS.md."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from bench.servers import LABELS


def markers(kind: str) -> tuple[str, str]:
    """The lines between which a run on `kind` (sqlite, postgresql) writes its results."""
    return (
        f"<!-- bench:results:{kind}:begin (written by `python -m bench.run`; edit outside these markers) -->",
        f"<!-- bench:results:{kind}:end -->",
    )


PEERS = ("fastapi", "litestar", "reference", "floor")
TARGETS = [
    # (workload, peer, minimum ratio ours/peer)
    *(
        (workload, peer, 1.2)
        for peer in ("fastapi", "litestar")
        for workload in ("list100", "list100_deep", "list1", "get", "unknown_key")
    ),
    ("list100", "floor", 0.5),
    ("list1", "floor", 0.3),
    ("get", "floor", 0.3),
]


def summarize(results: dict) -> None:
    """Adds `best` (the round with the most requests/s), `errors` (over all rounds) and
    `ratios` to every workload, and `targets` to the results."""
    for workload in results["workloads"].values():
        workload["best"], workload["errors"] = {}, {}
        for name, runs in workload["runs"].items():
            workload["best"][name] = max(runs, key=lambda r: r["rps"])
            workload["errors"][name] = sum(r["errors"] for r in runs)
        best = workload["best"]
        workload["ratios"] = {
            f"ours/{peer}": best["ours"]["rps"] / best[peer]["rps"] for peer in PEERS if "ours" in best and peer in best
        }
    targets = []
    loads = results["workloads"]
    for workload, peer, minimum in TARGETS:
        ratio = loads.get(workload, {}).get("ratios", {}).get(f"ours/{peer}")
        if ratio is not None:
            targets.append(
                {"target": f"{workload}: ours/{peer} ≥ {minimum}", "value": round(ratio, 3), "met": ratio >= minimum}
            )
    if "deep_page" in results:
        ratio = results["deep_page"]["median_ratio"]
        targets.append(
            {
                "target": "deep page p50 ≤ 1.2 × first page p50 (ours; median of "
                f"{results['deep_page']['pairs']} alternating {results['deep_page']['seconds']:g} s pairs)",
                "value": round(ratio, 3),
                "met": ratio <= 1.2,
            }
        )
    errors = sum(sum(w["errors"].values()) for w in loads.values())
    targets.append(
        {
            "target": "zero errors (unexpected statuses, socket errors, time-outs), all servers, all runs",
            "value": errors,
            "met": errors == 0,
        }
    )
    worst = max((r["p99_us"] / r["p50_us"] for w in loads.values() for r in w["runs"].get("ours", [])), default=0)
    best_worst = max(
        (w["best"]["ours"]["p99_us"] / w["best"]["ours"]["p50_us"] for w in loads.values() if "ours" in w["best"]),
        default=0,
    )
    targets.append(
        {
            "target": "p99 ≤ 5 × p50 (ours, reported runs)",
            "value": round(best_worst, 2),
            "met": best_worst <= 5,
            "worst_of_all_runs": round(worst, 2),
        }
    )
    for workers, by_load in results["scaling"].items():
        for workload, by_server in by_load.items():
            for peer in ("fastapi", "litestar"):
                if workload != "peak_rss_mb" and "ours" in by_server and peer in by_server:
                    ratio = by_server["ours"]["rps"] / by_server[peer]["rps"]
                    targets.append(
                        {
                            "target": f"{workers} workers, {workload}: ours/{peer} ≥ 1.2",
                            "value": round(ratio, 3),
                            "met": ratio >= 1.2,
                        }
                    )
    rss = [results["servers"].get("ours", {}).get("peak_rss_mb")]
    rss += [s.get("peak_rss_mb", {}).get("ours") for s in results["scaling"].values()]
    rss = [r for r in rss if r is not None]
    if rss:
        targets.append(
            {"target": "peak RSS ≤ 150 MB per worker (ours)", "value": round(max(rss), 1), "met": max(rss) <= 150}
        )
    results["targets"] = targets


# Who a sample's time is charged to: the innermost frame in one of these packages (the
# standard library is charged to its caller, so `uuid4` under the request-id middleware
# counts as ours and `inspect.signature` under Connexion as Connexion's).
PROFILE_BUCKETS = [
    # (label, pattern, only when it is the innermost frame). py-spy shows no C frames: time in
    # sqlite3's execute and fetch is charged to the SQLAlchemy frame that called it.
    (
        "database driver (sqlite3 / psycopg: execute, fetch)",
        re.compile(r"^(?:DefaultDialect\.do_execute|CursorFetchStrategy\.fetch\w*) \("),
        True,
    ),
    ("database driver (sqlite3 / psycopg: execute, fetch)", re.compile(r"\((?:.*/)?psycopg\w*/"), False),
    ("our code (handlers, models, sessions_api)", re.compile(r"\((?:.*/)?(?:handlers|models|sessions_api)/"), False),
    ("our code (handlers, models, sessions_api)", re.compile(r"\(sessions-api:"), False),
    ("bench peers (reference, floor)", re.compile(r"\((?:.*/)?bench/"), False),
    ("SQLAlchemy", re.compile(r"\((?:.*/)?sqlalchemy/"), False),
    ("SQLModel", re.compile(r"\((?:.*/)?sqlmodel/"), False),
    ("Connexion", re.compile(r"\((?:.*/)?connexion/"), False),
    ("jsonschema (parameter validation)", re.compile(r"\((?:.*/)?(?:jsonschema|referencing)/"), False),
    ("Litestar / msgspec", re.compile(r"\((?:.*/)?(?:litestar|msgspec)/"), False),
    ("FastAPI / pydantic", re.compile(r"\((?:.*/)?(?:fastapi|pydantic|pydantic_core)/"), False),
    ("Starlette", re.compile(r"\((?:.*/)?starlette/"), False),
    ("uvicorn (HTTP parsing, sockets)", re.compile(r"\((?:.*/)?uvicorn/"), False),
    (
        "anyio / asyncio / threads",
        re.compile(r"\((?:.*/)?(?:anyio/|asyncio/|threading\.py|queue\.py|concurrent/)"),
        False,
    ),
    ("logging", re.compile(r"\((?:.*/)?logging/"), False),
]


def summarize_profile(raw: Path, top: int = 25) -> dict:
    """py-spy's raw (collapsed) stacks: each sample charged to one package (`buckets_pct`,
    they add up to 100), and the share of samples in which each function appears
    (`inclusive_pct`) and on top of the stack (`self_pct`)."""
    inclusive, own, buckets, total = Counter(), Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] += n
        own[_frame_name(frames[-1])] += n
        for index, frame in enumerate(reversed(frames)):
            label = next(
                (
                    label
                    for label, pattern, innermost_only in PROFILE_BUCKETS
                    if pattern.search(frame) and (index == 0 or not innermost_only)
                ),
                None,
            )
            if label is not None:
                buckets[label] += n
                break
        else:
            buckets["other"] += n

    def share(counts: Counter) -> list:
        return [(name, round(100 * v / total, 1)) for name, v in counts.most_common(top)] if total else []

    return {"samples": total, "inclusive_pct": share(inclusive), "self_pct": share(own), "buckets_pct": share(buckets)}


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (to/file.py)"
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    parts = path.split("/")
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    else:
        parts = parts[-2:]
    return f"{func} ({'/'.join(parts)})"


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def render(results: dict) -> str:
    out = []
    m, s, d = results["machine"], results["settings"], results["dataset"]
    out.append(
        f"Run of {results['started_at']} (commit `{m['commit']}`{', with uncommitted changes' if m['dirty'] else ''}), "
        f"{results['elapsed_s'] / 60:.1f} min: `{results['command']}`.\n"
    )
    out.append(
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['wrk']}; load average at start "
        f"{' / '.join(str(x) for x in m['loadavg_at_start'])} (other engineers' test suites share the machine: "
        "absolute numbers are noisy, the side-by-side ratios are what count). Database: "
        f"`{s['database']}`. wrk: {s['connections']} connections, 1 thread, {s['warmup_s']:g} s warm-up then "
        f"{s['duration_s']:g} s measured per workload and server, {s['rounds']} round(s) in rotating order; "
        "the round with the most requests/s is reported, errors are counted over all rounds.\n"
    )
    built = "reused from an earlier build" if d.get("reused") else "built in this run"
    out.append(
        f"Data ({built}, {d['built_at']}): {d['params']['sessions']:,} sessions over {d['params']['organizations']} "
        f"organizations (the big one: {d['big_organization_sessions']:,}), {d['params']['devices']:,} devices, "
        f"{d['params']['users']} users with Personal organizations, memberships and keys (some bound, some revoked). "
        f"Users, organizations, devices and keys through the data layer in {d['setup_seconds']:.1f} s (this "
        f"includes writing the JSON lines file); the sessions through `{d['import_command']}`: "
        f"**{d['imported']:,} in {d['import_seconds']:.1f} s ({d['import_rate']:,.0f} lines/s)**.\n"
    )
    check = results.get("check", {})
    out.append(
        f"Correctness: all servers gave identical answers (status, body, `WWW-Authenticate`) to "
        f"{check.get('probes', 0)} requests before the measurement.\n"
        if not check.get("problems")
        else "Correctness: **the servers disagreed**; see BENCHMARKS.json.\n"
    )

    out.append("### Ratios (requests/s of ours ÷ the peer's)\n")
    out.append(
        "| workload | ours/performance-aware FastAPI | ours/Litestar + msgspec | ours/FastAPI + ORM | ours/floor |\n"
        "| --- | ---: | ---: | ---: | ---: |"
    )
    for w in results["workloads"].values():
        r = w.get("ratios", {})
        cells = " | ".join(f"{r.get(f'ours/{peer}', float('nan')):.2f}" for peer in PEERS)
        out.append(f"| {w['title']} | {cells} |")
    out.append("\n### Targets\n")
    out.append("| target | measured | met |\n| --- | ---: | :---: |")
    for t in results["targets"]:
        out.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")

    out.append("\n### Every workload\n")
    out.append(
        "| workload | server | req/s | p50 ms | p99 ms | p99/p50 | server CPU ms/request "
        "| unexpected statuses + socket errors |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for w in results["workloads"].values():
        for server, r in w["best"].items():
            out.append(
                f"| {w['title']} | {LABELS[server]} | {r['rps']:,.0f} | {_ms(r['p50_us'])} | {_ms(r['p99_us'])} | "
                f"{r['p99_us'] / r['p50_us']:.1f} | {r.get('cpu_ms_per_request', float('nan')):.2f} | "
                f"{w['errors'][server]} |"
            )
    out.append("\n### Processes\n")
    out.append("| server | start to first 200 (s) | peak RSS (MB) |\n| --- | ---: | ---: |")
    for name, srv in results["servers"].items():
        out.append(f"| {LABELS[name]} | {srv['startup_s']:.2f} | {srv.get('peak_rss_mb', float('nan')):.1f} |")
    if results["scaling"]:
        out.append("\n### Workers\n")
        out.append("| workers | workload | " + " | ".join(LABELS[n] for n in results["servers"]) + " |")
        out.append("| ---: | --- |" + " ---: |" * len(results["servers"]))
        for workers, by_load in results["scaling"].items():
            for workload, by_server in by_load.items():
                if workload == "peak_rss_mb":
                    continue
                cells = [f"{by_server[n]['rps']:,.0f}" if n in by_server else "" for n in results["servers"]]
                out.append(f"| {workers} | {results['workloads'][workload]['title']} | " + " | ".join(cells) + " |")
            rss = by_load.get("peak_rss_mb", {})
            out.append(
                f"| {workers} | peak RSS per worker (MB) | "
                + " | ".join(f"{rss[n]:.1f}" if n in rss else "" for n in results["servers"])
                + " |"
            )
    profiles = {w: p for w, p in results.get("profiles", {}).items() if "error" not in p}
    if profiles:
        out.append("\n### Where our server spends its time\n")
        out.append(
            "py-spy, sampling our server (GIL-holding samples only: the Python work) while wrk drives the "
            "workload; each sample is charged to the innermost frame of one of these packages (the standard "
            "library to its caller). Percent of samples:\n"
        )
        labels = []
        for prof in profiles.values():
            for label, _ in prof["buckets_pct"]:
                if label not in labels:
                    labels.append(label)
        out.append("| | " + " | ".join(results["workloads"][w]["title"] for w in profiles) + " |")
        out.append("| --- |" + " ---: |" * len(profiles))
        for label in labels:
            cells = [f"{dict(p['buckets_pct']).get(label, 0):.1f}" for p in profiles.values()]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("| samples | " + " | ".join(str(p["samples"]) for p in profiles.values()) + " |")
    return "\n".join(out) + "\n"


DEFAULT_DOC = """# Benchmarks

The Sessions API against a performance-aware FastAPI, a performance-aware Litestar, a
FastAPI + SQLModel reference and a Starlette floor, side by side.
See docs/contributors/benchmarks.md for the command.
"""


def write_markdown(results: dict, path: Path, kind: str) -> None:
    """Replace the `kind` section of `path` (between its markers) with this run's results."""
    write_section(path, kind, render(results))


def write_section(path: Path, kind: str, text: str) -> None:
    """Replace what lies between the markers of `kind` in `path` with `text` (appending the
    markers under a heading of their own if the file has none)."""
    begin, end = markers(kind)
    text_before = path.read_text() if path.exists() else DEFAULT_DOC
    if begin not in text_before or end not in text_before:
        text_before = text_before.rstrip() + f"\n\n## Latest run on {kind}\n\n{begin}\n{end}\n"
    head, rest = text_before.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")
