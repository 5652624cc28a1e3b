"""Artifact transfers: a 1 GiB file up and down through the file store (this server) and the
S3 store (SeaweedFS on 127.0.0.1), against `sha256sum` and `cp` of the same file on the same
disk. Every uploaded byte must be hashed, so `sha256sum` is the floor an upload is measured
against; a download is a read and a send, so `cp` is its floor.

`python -m bench.artifacts [--mib N] [--rounds R]` prints JSON: each transfer's MB/s (the best
of R rounds), its ratio to its floor, the server's CPU seconds per GiB and its peak RSS growth.
Everything runs on 127.0.0.1, each loop bounded by its rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.environment import DATA
from bench.servers import OURS_ENV, cli_json, serve_ours, sessions_api_command
from tests.support.s3_server import BUCKET, REGION, running_s3_server
from tests.support.transfers import MiB, ProcessWatch, file_chunks, random_file

API = "/api/v1"


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _floors(path: Path, rounds: int) -> dict[str, float]:
    """The best of `rounds` of sha256sum and of cp on this file (the page cache warm for both)."""
    copy = path.with_suffix(".copy")
    hashing = min(
        _timed(lambda: subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)) for _ in range(rounds)
    )
    copying = min(_timed(lambda: subprocess.run(["cp", str(path), str(copy)], check=True)) for _ in range(rounds))
    copy.unlink(missing_ok=True)
    return {"sha256sum": hashing, "cp": copying}


def _store_round(origin: str, secret: str, source: Path, size: int, sha256: str, server: ProcessWatch) -> dict:
    """One upload and one download of `source` through the API: times, server CPU and RSS."""
    api = httpx.Client(base_url=origin + API, headers={"Authorization": f"Bearer {secret}"}, timeout=600)
    session_id = api.post("/sessions", json={"platform": "android"}).json()["id"]
    declared = {"type": "video", "name": "screen.mp4", "contentType": "video/mp4", "size": size, "sha256": sha256}
    artifact = api.post(f"/sessions/{session_id}/artifacts", json=declared).json()
    upload = artifact["upload"]
    url = upload["url"] if upload["url"].startswith("http") else origin + upload["url"]
    headers = {**upload["headers"], "Content-Length": str(size)}
    baseline, cpu = server.rss(), server.cpu()
    with server:
        up = _timed(
            lambda: httpx.put(url, content=file_chunks(source), headers=headers, timeout=600).raise_for_status()
        )
        up_cpu = server.cpu() - cpu
        completed = api.post(f"/sessions/{session_id}/artifacts/{artifact['id']}/complete")
        completed.raise_for_status()
        download = api.get(f"/sessions/{session_id}/artifacts/{artifact['id']}").json()["download"]["url"]
        url = download if download.startswith("http") else origin + download
        cpu = server.cpu()

        def fetch() -> None:
            hasher = hashlib.md5(usedforsecurity=False)  # touch every byte, cheaply
            with httpx.stream("GET", url, timeout=600) as answer:
                for chunk in answer.iter_bytes(MiB):
                    hasher.update(chunk[:1])

        down = _timed(fetch)
        down_cpu = server.cpu() - cpu
    api.delete(f"/sessions/{session_id}/artifacts/{artifact['id']}")
    api.post(f"/sessions/{session_id}/release")  # its device for the next round
    return {"up": up, "down": down, "up_cpu": up_cpu, "down_cpu": down_cpu, "rss_growth": server.peak - baseline}


def _measure(
    store: str, extra_env: dict[str, str], workdir: Path, source: Path, size: int, sha256: str, rounds: int
) -> dict:
    env = {
        **os.environ,
        **OURS_ENV,
        **extra_env,
        "DATABASE_URL": f"sqlite:///{workdir / f'{store}.db'}",
        "SESSIONS_API_MAX_ARTIFACT_BYTES": str(size),
    }
    subprocess.run([*sessions_api_command(), "db", "upgrade"], env=env, check=True, capture_output=True)
    user = cli_json(env, "user", "create", "--email", f"bench-{store}@example.com")
    cli_json(
        env, "device", "add", "--platform", "android", "--type", "emulator", "--name", "Pixel 9", "--os-version", "15"
    )
    secret = cli_json(env, "key", "create", "--user", user["id"])["secret"]
    process, origin = serve_ours(env, workdir / f"{store}.log")
    try:
        runs = [_store_round(origin, secret, source, size, sha256, ProcessWatch(process.pid)) for _ in range(rounds)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    best_up = min(runs, key=lambda run: run["up"])
    best_down = min(runs, key=lambda run: run["down"])
    gib = size / 1024**3
    return {
        "upload_mb_s": size / best_up["up"] / 1e6,
        "download_mb_s": size / best_down["down"] / 1e6,
        "server_cpu_s_per_gib_up": best_up["up_cpu"] / gib,
        "server_cpu_s_per_gib_down": best_down["down_cpu"] / gib,
        "server_rss_growth_mib": max(run["rss_growth"] for run in runs) / MiB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the file's size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each transfer; the best counts (default 3)")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="artifacts-", dir=DATA))  # the same disk for every measure
    try:
        source, size = workdir / "screen.mp4", args.mib * MiB
        sha256 = random_file(source, size)
        floors = _floors(source, args.rounds)
        results: dict = {
            "size_mib": args.mib,
            "floors_mb_s": {name: size / took / 1e6 for name, took in floors.items()},
        }
        results["file"] = _measure(
            "file",
            {"SESSIONS_API_ARTIFACT_STORE": f"file://{workdir / 'store'}"},
            workdir,
            source,
            size,
            sha256,
            args.rounds,
        )
        (workdir / "s3").mkdir()
        with running_s3_server(workdir / "s3") as s3:
            s3_env = {
                **s3.credentials,
                "SESSIONS_API_ARTIFACT_STORE": f"s3://{BUCKET}/bench",
                "SESSIONS_API_S3_ENDPOINT_URL": s3.endpoint_url,
                "SESSIONS_API_S3_REGION": REGION,
            }
            results["s3"] = _measure("s3", s3_env, workdir, source, size, sha256, args.rounds)
        for store in ("file", "s3"):
            results[store]["upload_vs_sha256sum"] = results[store]["upload_mb_s"] / results["floors_mb_s"]["sha256sum"]
            results[store]["download_vs_cp"] = results[store]["download_mb_s"] / results["floors_mb_s"]["cp"]
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
