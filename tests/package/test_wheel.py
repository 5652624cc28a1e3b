"""The package is the product: the sdist and the wheel carry what the server needs, and the
wheel alone, installed in a new virtual environment, runs it from any directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support.live_server import free_port
from tests.support.node_tools import ROOT

pytestmark = pytest.mark.live_server


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=kwargs.pop("timeout", 600), **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel) built as `python -m build` does: the wheel from the unpacked sdist."""
    source = tmp_path_factory.mktemp("source")
    listed = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)])
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Path:
    """The `sessions-api` command of a new virtual environment holding only the wheel and its
    dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "--quiet", str(built[1])], timeout=900)
    return venv / "bin" / "sessions-api"


def test_the_wheel_carries_the_contract_and_the_migrations_under_one_name(built):
    names = zipfile.ZipFile(built[1]).namelist()
    assert "sessions_api/openapi/sessions.yaml" in names
    assert "sessions_api/migrations/env.py" in names and "sessions_api/migrations/script.py.mako" in names
    migrations = {Path(name).name for name in names if name.startswith("sessions_api/migrations/versions/")}
    assert {path.name for path in (ROOT / "migrations" / "versions").glob("0*.py")} <= migrations
    assert {name.split("/")[0] for name in names if not name.startswith("sessions_api-")} == {"sessions_api"}
    top_level = next(name for name in names if name.endswith("top_level.txt"))
    assert zipfile.ZipFile(built[1]).read(top_level).decode().split() == ["sessions_api"]


def test_the_sdist_carries_the_source_folders(built):
    names = {name.split("/", 1)[1] for name in tarfile.open(built[0]).getnames() if "/" in name}
    assert {
        "openapi/sessions.yaml",
        "migrations/env.py",
        "models/tables.py",
        "handlers/sessions.py",
        "core/settings.py",
        "web/app.py",
        "cli/commands.py",
        "pyproject.toml",
        "README.md",
    } <= names


def _serve(command: Path, env: dict, workdir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(command), "serve", "--port", str(port), "--demo"],
        cwd=workdir,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text()
        if "X-Organization-Id" in text:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    return process, text
                except OSError:
                    time.sleep(0.1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the installed server did not start:\n{log.read_text()}")


def _check_a_running_installed_server(command: Path, database_url: str, workdir: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SESSIONS_API_", "PYTHON"))}
    env["DATABASE_URL"] = database_url
    upgrade = _run([str(command), "db", "upgrade", "--json"], cwd=workdir, env=env)
    assert json.loads(upgrade.stdout)["from"] is None
    process, output = _serve(command, env, workdir, workdir / "server.log")
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)/api/v1", output).group(1))
        secret = re.search(r"Demo API key \(shown once\): (sapi_\S+)", output).group(1)
        base = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(
            f"{base}/api/v1/sessions?limit=3", headers={"Authorization": f"Bearer {secret}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and len(json.loads(response.read())["data"]) == 3
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ready", "unreadableSecrets": 0}
        with urllib.request.urlopen(f"{base}/api/v1/openapi.yaml", timeout=10) as response:
            assert response.read() == (ROOT / "openapi" / "sessions.yaml").read_bytes()
        with urllib.request.urlopen(f"{base}/api/v1/ui/", timeout=10) as response:
            assert b"swagger-ui" in response.read()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in (workdir / "server.log").read_text()


def test_the_installed_wheel_runs_from_anywhere_on_sqlite(installed, tmp_path):
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    _check_a_running_installed_server(installed, f"sqlite:///{workdir}/sessions.db", workdir)
    assert (workdir / "sessions.db").exists()


def test_the_installed_wheel_runs_on_postgresql(installed, postgres, tmp_path):
    url = postgres.create_empty()
    _check_a_running_installed_server(installed, url, tmp_path)


def test_python_m_sessions_api_runs_from_the_repository_root_with_the_wheel_installed(installed):
    """From the root, the current directory's `sessions_api/` folder comes first on the path."""
    python = installed.parent / "python"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SESSIONS_API_", "PYTHON"))}
    for where in (ROOT, ROOT.parent):
        shown = _run([str(python), "-m", "sessions_api", "--help"], cwd=where, env=env)
        assert "usage: sessions-api" in shown.stdout, where
    version = _run([str(installed), "--version"], env=env).stdout.strip()
    assert version == f"sessions-api {_project_version()}"


def _project_version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
