"""The benchmark, in one command: `.venv/bin/python -m bench.run` (see BENCHMARKS.md).

It builds the data through the product's own paths (reused while its parameters match),
starts the product, the performance-aware FastAPI peer, the FastAPI reference and the
Starlette floor as separate server processes on the same database, checks that they give identical answers, drives each
workload with wrk against each server in turn (warm-up, then a bounded measurement, for
several rounds), and writes BENCHMARKS.md (between its result markers) and BENCHMARKS.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import check as correctness
from bench import curve, report
from bench.dataset import default_params
from bench.environment import DATA, git, loadavg, machine, now, redact, reset_database, sqlite_path
from bench.load import Workload, install_wrk, run_wrk, write_script, wrk_path
from bench.servers import ROOT, SERVERS, Server, sessions_api_command

API = "/api/v1"
WORKLOADS = ("list100", "list100_deep", "list1", "get", "unknown_key")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sessions",
        type=_sizes,
        default=[1_000_000],
        help="sessions in the dataset (default 1,000,000); several, comma-separated, measure the size curve "
        "(bench.curve: ours alone, every read workload and filter, at each size)",
    )
    p.add_argument(
        "--database-url",
        help="default: a SQLite file under bench/.data/; "
        "postgresql+psycopg://127.0.0.1:5432/bench uses (and creates) that database",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild the data even if a matching build exists")
    p.add_argument("--duration", type=float, default=10, help="seconds measured per workload and server")
    p.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each measurement")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (fixed)")
    p.add_argument("--rounds", type=int, default=2, help="rounds over all workloads; the best round is reported")
    p.add_argument(
        "--workers",
        default=None,
        help="comma-separated worker counts to measure throughput with (default: 1,2 on PostgreSQL, 1 on SQLite)",
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="which servers (default: all)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"which workloads (default: {','.join(WORKLOADS)})")
    p.add_argument(
        "--profile",
        type=float,
        default=8,
        metavar="SECONDS",
        help="seconds of py-spy profile of our server under listSessions limit=100 and getSession (default 8; 0: none)",
    )
    p.add_argument("--check-only", action="store_true", help="build, start, check the answers, stop")
    p.add_argument("--data-dir", type=Path, default=DATA, help="where builds, manifests and run files go (bench/.data)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument(
        "--json", type=Path, help="default: BENCHMARKS.json on SQLite, BENCHMARKS-postgresql.json on PostgreSQL"
    )
    p.add_argument("--no-report", action="store_true", help="write only the JSON (to --json)")
    p.add_argument("--install-wrk", action="store_true", help="apt-get install wrk if it is missing (root)")
    return p.parse_args(argv)


# --- the data -----------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return [int(size.replace("_", "")) for size in text.split(",") if size]


def default_database_url(sessions: int, data_dir: Path = DATA) -> str:
    return f"sqlite:///{data_dir / f'bench-{sessions}.db'}"


def manifest_path(data_dir: Path, url: str) -> Path:
    """Where the build of the data for `url` is described."""
    return data_dir / f"manifest-{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"


def _count_sessions(url: str) -> int | None:
    try:
        path = sqlite_path(url)
        if path is not None:
            if not path.exists():
                return None
            import sqlite3

            with sqlite3.connect(path) as conn:
                return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    except Exception:  # noqa: BLE001 (no database, no table: not built)
        return None


def ensure_data(url: str, params: dict, rebuild: bool, log, data_dir: Path = DATA) -> dict:
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest_file = manifest_path(data_dir, url)
    if manifest_file.exists() and not rebuild:
        manifest = json.loads(manifest_file.read_text())
        if manifest["params"] == params and _count_sessions(url) == params["sessions"]:
            log(f"reusing the data in {url} (built {manifest['built_at']})")
            # Built by an earlier version: its schema is brought up to date, as an operator would.
            upgrade = [*sessions_api_command(), "db", "upgrade"]
            subprocess.run(upgrade, cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, check=True, capture_output=True)
            manifest["reused"] = True
            return manifest
    log(f"building {params['sessions']:,} sessions in {url}")
    reset_database(url)
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.dataset", json.dumps(params), str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: building the data failed:\n{done.stderr[-3000:]}")
    manifest = json.loads(done.stdout.strip().splitlines()[-1])
    setup_seconds = time.monotonic() - started
    log(f"users, organizations, keys, devices and the JSON lines file: {setup_seconds:.1f}s; importing")
    command = [*sessions_api_command(), "session", "import", manifest["lines"], "--json"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200)
    import_seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: the import failed:\n{done.stderr[-3000:]}")
    imported = json.loads(done.stdout)["imported"]
    lines_bytes = Path(manifest["lines"]).stat().st_size
    manifest.update(
        setup_seconds=setup_seconds,
        import_seconds=import_seconds,
        imported=imported,
        import_rate=imported / import_seconds,
        lines_bytes=lines_bytes,
        built_at=now(),
        database_url=url,
        import_command=" ".join(["sessions-api", "session", "import", "FILE"]),
        product_commit=git("rev-parse", "--short", "HEAD"),
    )
    path = sqlite_path(url)
    if path is not None:
        manifest["database_bytes"] = path.stat().st_size
    Path(manifest["lines"]).unlink()  # 200 MB for 1M sessions; the database has them now
    manifest_file.write_text(json.dumps(manifest, indent=1))
    log(f"imported {imported:,} sessions in {import_seconds:.1f}s ({imported / import_seconds:,.0f}/s)")
    manifest["reused"] = False
    return manifest


# --- the workloads ------------------------------------------------------------------------


def workloads(manifest: dict, ids: list[str]) -> dict[str, Workload]:
    auth = {"Authorization": f"Bearer {manifest['secret']}", "X-Organization-Id": manifest["big_organization"]}
    unknown = {
        "Authorization": "Bearer sapi_0123456789abcdef_" + "A" * 43,
        "X-Organization-Id": manifest["big_organization"],
    }
    return {
        "list100": Workload("list100", "listSessions limit=100, first page", [f"{API}/sessions?limit=100"], auth),
        "list100_deep": Workload(
            "list100_deep",
            "listSessions limit=100, `before` near the oldest",
            [f"{API}/sessions?limit=100&before={manifest['deep_before']}"],
            auth,
        ),
        "list1": Workload("list1", "listSessions limit=1", [f"{API}/sessions?limit=1"], auth),
        "get": Workload("get", f"getSession over {len(ids):,} random ids", [f"{API}/sessions/{i}" for i in ids], auth),
        "unknown_key": Workload("unknown_key", "unknown key (401)", [f"{API}/sessions?limit=100"], unknown, expect=401),
    }


def probe_request(manifest: dict) -> tuple[str, dict]:
    """What a server must answer 200 to before it counts as started."""
    return f"{API}/sessions?limit=1", {
        "Authorization": f"Bearer {manifest['secret']}",
        "X-Organization-Id": manifest["big_organization"],
    }


def check_servers(servers: dict[str, Server], manifest: dict, ids: list[str]) -> list[str]:
    return correctness.check({name: server.base_url for name, server in servers.items()}, manifest, ids)


def measure(server: Server, workload: Workload, script: Path, args) -> dict:
    if args.warmup > 0:
        run_wrk(server.base_url, script, seconds=args.warmup, connections=args.connections)
    cpu_before = server.cpu_seconds()
    result = run_wrk(server.base_url, script, seconds=args.duration, connections=args.connections)
    cpu = server.cpu_seconds() - cpu_before
    # CPU time per request: much less sensitive than requests/s to what else the machine runs.
    result["cpu_ms_per_request"] = 1000 * cpu / max(1, result["requests"])
    result["cpu_utilization"] = cpu / (result["duration_us"] / 1e6)
    result["loadavg"] = loadavg()
    return result


def deep_page_pairs(server: Server, scripts: dict, connections: int, pairs: int = 5, seconds: float = 2) -> dict:
    """The deep page's p50 against the first page's, measured in alternating short slices so
    that both see the same machine (the two workloads' main measurements are tens of seconds
    apart, and other load on the machine drifts in that time)."""
    ratios = []
    for _ in range(pairs):
        first = run_wrk(server.base_url, scripts["list100"], seconds=seconds, connections=connections)
        deep = run_wrk(server.base_url, scripts["list100_deep"], seconds=seconds, connections=connections)
        ratios.append(deep["p50_us"] / first["p50_us"])
    ratios.sort()
    return {"pairs": pairs, "seconds": seconds, "ratios": ratios, "median_ratio": ratios[len(ratios) // 2]}


def profile(server: Server, workload: Workload, script: Path, seconds: float, connections: int, out: Path) -> dict:
    """py-spy (sampling, from outside) on our server while wrk drives `workload`."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    raw = out.with_suffix(".txt")
    pid = str(server.worker_pids()[0])
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            pid,
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--gil",
            "--format",
            "raw",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_wrk(server.base_url, script, seconds=seconds + 1, connections=connections)
    spy.wait(timeout=60)
    return report.summarize_profile(raw) if raw.exists() else {"error": "py-spy wrote nothing"}


# --- the run ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[bench {time.monotonic() - started:7.1f}s] {message}", flush=True)

    if shutil.which("wrk") is None and args.install_wrk:
        install_wrk()
    if not args.check_only:
        wrk_path()
    if len(args.sessions) > 1:
        return size_curve(args, argv, log)
    args.sessions = args.sessions[0]
    url = args.database_url or default_database_url(args.sessions, args.data_dir)
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    json_path = args.json or ROOT / ("BENCHMARKS.json" if kind == "sqlite" else f"BENCHMARKS-{kind}.json")
    worker_counts = [int(w) for w in (args.workers or ("1" if url.startswith("sqlite") else "1,2")).split(",")]
    names = [n for n in args.servers.split(",") if n]
    chosen = [w for w in args.workloads.split(",") if w]
    params = default_params(args.sessions)
    manifest = ensure_data(url, params, args.rebuild, log, args.data_dir)
    ids = [line for line in Path(manifest["ids"]).read_text().split() if line]
    loads = workloads(manifest, ids)
    run_dir = args.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    scripts = {name: write_script(loads[name], run_dir) for name in chosen}
    probe = probe_request(manifest)

    results: dict = {
        "started_at": now(),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "rounds": args.rounds,
            "wrk_threads": 1,
            "database": redact(url),
        },
        "dataset": {k: v for k, v in manifest.items() if "secret" not in k},
        "servers": {},
        "workloads": {name: {"title": loads[name].title, "expect": loads[name].expect, "runs": {}} for name in chosen},
        "scaling": {},
        "profiles": {},
    }
    servers = {name: Server(name, url, 1, run_dir, probe[0], probe[1]) for name in names}
    try:
        for name, server in servers.items():  # one at a time, so start-up is timed alone
            server.start()
            log(f"{name} up on :{server.port} in {server.startup_seconds:.2f}s")
            results["servers"][name] = {"startup_s": server.startup_seconds}
        problems = check_servers(servers, manifest, ids)
        results["check"] = {"probes": len(correctness.probes(manifest, ids)), "problems": problems}
        if problems:
            log("the servers disagree:\n" + "\n".join(problems))
            return 1
        log(f"all {len(servers)} servers gave identical answers to {results['check']['probes']} requests")
        if args.check_only:
            return 0
        for round_index in range(args.rounds):
            for workload_name in chosen:
                order = names[round_index % len(names) :] + names[: round_index % len(names)]
                for name in order:
                    result = measure(servers[name], loads[workload_name], scripts[workload_name], args)
                    results["workloads"][workload_name]["runs"].setdefault(name, []).append(result)
                    log(
                        f"round {round_index + 1} {workload_name:13s} {name:9s} {result['rps']:8.0f} req/s "
                        f"p50 {result['p50_us'] / 1000:6.2f}ms p99 {result['p99_us'] / 1000:6.2f}ms "
                        f"cpu {result['cpu_ms_per_request']:5.2f}ms/req ({result['cpu_utilization']:.2f} cores) "
                        f"unexpected {result['errors']}"
                    )
        if "ours" in servers and {"list100", "list100_deep"} <= set(chosen):
            results["deep_page"] = deep_page_pairs(servers["ours"], scripts, args.connections)
            log(f"deep page / first page p50, paired: {results['deep_page']['median_ratio']:.2f}")
        if args.profile and "ours" in servers:
            for workload_name in [w for w in ("list100", "get") if w in chosen]:
                out = args.data_dir / f"profile-{workload_name}"
                results["profiles"][workload_name] = profile(
                    servers["ours"], loads[workload_name], scripts[workload_name], args.profile, args.connections, out
                )
                log(f"profiled ours under {workload_name}: {out}.txt")
        for name, server in servers.items():
            results["servers"][name]["peak_rss_mb"] = max(server.peak_rss_mb().values())
    finally:
        for server in servers.values():
            server.stop()

    for workers in [w for w in worker_counts if w != 1 or len(worker_counts) > 1]:
        scaling = results["scaling"].setdefault(str(workers), {})
        for name in names:
            server = Server(name, url, workers, run_dir, probe[0], probe[1])
            try:
                server.start()
                for workload_name in chosen:
                    result = measure(server, loads[workload_name], scripts[workload_name], args)
                    scaling.setdefault(workload_name, {})[name] = result
                    log(f"{workers} worker(s) {workload_name:8s} {name:9s} {result['rps']:8.0f} req/s")
                scaling.setdefault("peak_rss_mb", {})[name] = max(
                    rss for pid, rss in server.peak_rss_mb().items() if pid in server.worker_pids()
                )
            finally:
                server.stop()

    results["finished_at"] = now()
    results["elapsed_s"] = time.monotonic() - started
    report.summarize(results)
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not args.no_report:
        report.write_markdown(results, args.output, kind)
        log(f"wrote {args.output.name} ({kind} section) and {json_path.name}")
    else:
        log(f"wrote {json_path}")
    return 0


def size_curve(args, argv: list[str] | None, log) -> int:
    """`--sessions A,B,C`: the size curve (bench.curve), written beside the main results."""
    wrk_path()
    run_dir = args.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    results = curve.run_curve(args, args.sessions, log, run_dir)
    kind = "postgresql" if (args.database_url or "").startswith("postgresql") else "sqlite"
    results.update(
        started_at=now(),
        commit=git("rev-parse", "--short", "HEAD"),
        command=" ".join([Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])]),
        machine=machine(),
    )
    json_path = args.json or ROOT / f"BENCHMARKS-curve-{kind}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not args.no_report:
        curve.write_markdown(results, args.output, kind)
    log(f"wrote {json_path.name}" + ("" if args.no_report else f" and {args.output.name} (curve:{kind})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
