"""Swagger UI in a real headless browser (Debian's chromium driven by playwright-core): every
operation renders from the served spec, and a screenshot is kept in test-artifacts/."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from sessions_api.core import resources
from sessions_api.web.operations import METHODS
from tests.support.live_server import running_server, server_env
from tests.support.node_tools import run

pytestmark = [pytest.mark.live_server, pytest.mark.node, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", "test-artifacts"))


def _spec_operations() -> set[tuple[str, str, str, str]]:
    spec = yaml.safe_load(resources.spec_path().read_text())
    return {
        (method.upper(), path, operation["operationId"], operation["summary"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (CI installs it and never skips this)")
    return CHROMIUM


def test_swagger_ui_renders_every_operation_in_a_browser(chromium, node_tools, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = (ARTIFACTS / "swagger-ui.png").resolve()
    screenshot.unlink(missing_ok=True)
    env = server_env(f"sqlite:///{tmp_path}/sessions.db")
    with running_server(env, log_path=tmp_path / "server.log") as (base, _process):
        done = run(
            ["node", str(Path(__file__).parent / "browser" / "docs_page.mjs"), f"{base}/ui/", str(screenshot)],
            timeout=180,
            env={**os.environ, "CHROMIUM_PATH": str(chromium)},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    page = json.loads(done.stdout.strip().splitlines()[-1])

    assert page["title"].startswith("Sessions API")
    rendered = {(op["method"], op["path"], op["operationId"], op["summary"]) for op in page["operations"]}
    # Every operation of the contract, as the spec names and summarizes it (34 at 1.7.0).
    assert rendered == _spec_operations()
    assert ("GET", "/sessions", "listSessions", "List sessions") in rendered and len(rendered) >= 26
    assert page["statuses"] == ["200", "400", "401", "403", "404", "413", "429", "431", "500", "503"]
    assert page["example"] and "releasedAt" in page["example"]  # the $ref'd examples resolved
    # The page read the file as served (not Connexion's inlined copy) and nothing else off-host.
    origin = urlsplit(base)._replace(path="", query="", fragment="").geturl()
    assert f"{base}/openapi.json" in page["requests"]
    assert all(url.startswith((origin, "data:")) for url in page["requests"]), page["requests"]
    assert page["failed"] == [] and page["errors"] == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
