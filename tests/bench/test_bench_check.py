"""The benchmark compares like with like: the product, the FastAPI reference and the
Starlette floor (bench/) give identical answers on a small dataset built the bench's way.

This runs the harness's own correctness check (`python -m bench.run --check-only`), a few
requests of the in-process loop (`python -m bench.inprocess`), and the size curve and the
writes and deliveries tools on tiny inputs, checking what they check (every filter at every
size; no double lease, no lost or repeated event), not the benchmark: no timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from bench import curve, dataset, run  # noqa: E402
from bench import writes as writes_tool  # noqa: E402
from bench.servers import SERVERS, Server  # noqa: E402

pytestmark = [pytest.mark.bench, pytest.mark.live_server]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[str, dict, Path]:
    data_dir = tmp_path_factory.mktemp("bench")
    url = f"sqlite:///{data_dir}/bench.db"
    manifest = run.ensure_data(url, dataset.small_params(), rebuild=True, log=lambda _: None, data_dir=data_dir)
    assert manifest["imported"] == 600
    return url, manifest, data_dir


def test_every_server_gives_identical_answers(built, tmp_path: Path):
    url, manifest, _ = built
    ids = Path(manifest["ids"]).read_text().split()
    probe_path, probe_headers = run.probe_request(manifest)
    servers = {name: Server(name, url, 1, tmp_path, probe_path, probe_headers) for name in SERVERS}
    try:
        for server in servers.values():
            server.start(timeout=60)
        problems = run.check_servers(servers, manifest, ids)
    finally:
        for server in servers.values():
            server.stop()
    assert problems == [], "\n".join(problems)


def test_the_in_process_loop_calls_every_app_with_every_workload(built):
    url, _, data_dir = built
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.inprocess",
            "--database-url",
            url,
            "--data-dir",
            str(data_dir),
            "--requests",
            "40",
            "--concurrency",
            "4",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # non-zero: an unexpected status
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]}
    assert set(rows) == set(run.WORKLOADS)
    assert all(len(cells) == 2 * len(SERVERS) + len(SERVERS) - 1 for cells in rows.values())


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


MANIFEST_KEYS = {"admin_secret": "", "big_organization": ""}  # what usage_workloads reads


def test_the_size_curve_measures_every_filter_and_usage_report_at_every_size(tmp_path: Path):
    out = tmp_path / "curve.json"
    done = _bench(
        "bench.run",
        *("--sessions", "300,600", "--duration", "1", "--warmup", "0", "--connections", "2"),
        *("--database-url", f"sqlite:///{tmp_path}/curve.db", "--data-dir", str(tmp_path)),
        *("--no-report", "--json", str(out)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert list(results["sizes"]) == ["300", "600"]
    for entry in results["sizes"].values():
        assert set(entry["workloads"]) == {*curve.PAGES, *curve.FILTERS, *curve.usage_workloads(MANIFEST_KEYS)}
        assert all(w["requests"] > 0 and w["errors"] == 0 for w in entry["workloads"].values())
        assert entry["loop_sharing"]["hog"].startswith("list")
        assert entry["import_rate"] > 0
    assert all("slowdown" in w for w in results["sizes"]["600"]["workloads"].values())
    assert sum("getUsage" in target["target"] for target in results["targets"]) == 2 * 3


def test_writes_and_deliveries_lose_nothing_and_lease_no_device_twice(tmp_path: Path):
    out = tmp_path / "writes.json"
    done = _bench(
        "bench.writes",
        *("--workers", "1", "--duration", "2", "--concurrency", "4", "--devices", "8"),
        *("--backlog", "40", "--slow-ms", "20", "--lag-rate", "20", "--drain-timeout", "60"),
        *("--data-dir", str(tmp_path), "--no-report", "--json", str(out)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    writes = results["writes"]["1"]
    for name in writes_tool.WRITERS:
        assert writes[name]["cycles"] > 0 and writes[name]["unexpected"] == 0
        assert writes[name]["double_leases"] == 0
    assert writes["ours"]["events"] == 2 * 2 * writes["ours"]["cycles"]  # 2 events, 2 endpoints
    # Like for like: the peer writes in each cycle what ours writes (an audit row and an event
    # per change, an outbox row per change and endpoint).
    expected = {"audit": 2, "events": 2, "outbox": 4}
    assert writes["ours"]["rows_per_cycle"] == writes["fastapi"]["rows_per_cycle"] == expected
    assert writes["fastapi_no_webhooks"]["rows_per_cycle"] == {**expected, "outbox": 0}
    assert writes["ours"]["lost_events"] == 0 and writes["ours"]["duplicate_arrivals"] == 0
    for measured in results["deliveries"].values():
        assert measured["arrived"] == measured["events"] and measured["events_per_s"] > 0
    assert results["lag"]["1"]["arrived"] == results["lag"]["1"]["events"] > 0


def test_a_burst_leases_every_device_once_and_the_queue_serves_in_order(tmp_path: Path):
    out = tmp_path / "bursts.json"
    url = f"sqlite:///{tmp_path / 'bursts.db'}"
    done = _bench(
        "bench.bursts",
        *("--database-url", url, "--workers", "1", "--starts", "40", "--connections", "8"),
        *("--queue-devices", "6", "--timeout", "120", "--json", str(out)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    leases, queue = runs["leases/1"], runs["queue/1"]
    assert leases["statuses"] == {"201": 40} and leases["double_leases"] == 0
    assert queue["served"] == 40 and queue["served_twice"] == 0 and queue["double_leases"] == 0
    assert set(queue["statuses"]) == {"201", "202"} and queue["out_of_order"] == 0  # some waited, all served
