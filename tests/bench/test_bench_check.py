"""The benchmark compares like with like: the product, the FastAPI reference and the
Starlette floor (bench/) give identical answers on a small dataset built the bench's way.

This runs the harness's own correctness check (`python -m bench.run --check-only`) and a
few requests of the in-process loop (`python -m bench.inprocess`), not the benchmark: no
load, no timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from bench import dataset, run  # noqa: E402
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
