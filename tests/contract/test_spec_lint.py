"""Spectral with `spectral:oas` and the OWASP API Security ruleset (`npm run lint:spec`):
no errors, no warnings, and every rule switched off in .spectral.yaml says why."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from sessions_api.core.resources import spec_path
from tests.support.node_tools import ROOT, bin_path, run

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("node_tools")]
CONFIG = ROOT / ".spectral.yaml"


def _lint(cwd=ROOT) -> list[dict]:
    done = run(
        [
            bin_path("spectral"),
            "lint",
            "--format",
            "json",
            "--quiet",
            "--ruleset",
            ".spectral.yaml",
            "openapi/sessions.yaml",
        ],
        cwd=cwd,
        timeout=120,
    )
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout)


def test_the_documented_command_passes():
    done = run(["npm", "run", "--silent", "lint:spec"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_errors_and_no_warnings():
    problems = [
        f"{p['code']} at {'.'.join(map(str, p['path']))}: {p['message']}" for p in _lint() if p["severity"] <= 1
    ]
    assert problems == []


def test_both_rulesets_are_on_and_every_exception_has_a_reason():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["extends"] == ["spectral:oas", "@stoplight/spectral-owasp-ruleset"]
    lines = CONFIG.read_text().splitlines()
    switched_off = [i for i, line in enumerate(lines) if re.search(r":\s*off\s*$", line)]
    assert switched_off, "expected the documented exceptions"
    for index in switched_off:
        # The reason is a comment right above the rule, or above the override block holding it.
        above = next(
            lines[j]
            for j in range(index - 1, -1, -1)
            if lines[j].strip().startswith("#") or lines[j].lstrip().startswith("- files:")
        )
        if above.lstrip().startswith("- files:"):
            block = lines.index(above)
            above = lines[block - 1]
        assert above.strip().startswith("#") and len(above.strip()) > 20, lines[index]


def test_the_lint_catches_what_it_is_there_for(tmp_path):
    """The same config on a worse copy of the spec: the overrides are scoped, the rules bite."""
    (tmp_path / "openapi").mkdir()
    shutil.copy(CONFIG, tmp_path / ".spectral.yaml")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")  # where the ruleset resolves from
    spec = yaml.safe_load(spec_path().read_text())
    operation = spec["paths"]["/sessions"]["get"]
    del operation["description"]
    del spec["components"]["parameters"]["Limit"]["schema"]["maximum"]
    del spec["components"]["schemas"]["Session"]["properties"]["user"]["maxLength"]
    del spec["components"]["schemas"]["SessionList"]["properties"]["data"]["maxItems"]
    operation["security"] = []
    del operation["responses"]["429"]
    del operation["responses"]["200"]["headers"]["RateLimit"]
    (tmp_path / "openapi" / "sessions.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    problems = {(problem["code"], ".".join(map(str, problem["path"]))) for problem in _lint(tmp_path)}
    assert {
        ("operation-description", "paths./sessions.get"),
        ("owasp:api2:2023-read-restricted", "paths./sessions.get.security"),
        ("owasp:api4:2023-integer-limit-legacy", "components.parameters.Limit.schema"),
        ("owasp:api4:2023-string-limit", "components.schemas.Session.properties.user"),
        ("owasp:api4:2023-array-limit", "components.schemas.SessionList.properties.data"),
        ("owasp:api4:2023-rate-limit-responses-429", "paths./sessions.get.responses"),
        ("owasp:api4:2023-rate-limit", "paths./sessions.get.responses.200.headers"),
    } <= problems, problems
    # Only those: the switched-off rules and scoped overrides still hide nothing else.
    assert len(problems) == 7, problems
