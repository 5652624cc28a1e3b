"""The benchmark compares like with like: the product, the FastAPI reference and the
Starlette floor (bench/) give identical answers on a small dataset built the bench's way.

This runs the harness's own correctness check (`python -m bench.run --check-only`), not
the benchmark: no load, no timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from bench import dataset, run  # noqa: E402
from bench.servers import SERVERS, Server  # noqa: E402


def test_the_three_servers_give_identical_answers(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/bench.db"
    manifest = run.ensure_data(url, dataset.small_params(), rebuild=True, log=lambda _: None, data_dir=tmp_path)
    assert manifest["imported"] == 600
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
