"""The breaking-change gate (`npm run breaking-changes -- REF`, tools/breaking-changes.mjs):
it fails on each kind of change that breaks an existing client, and passes additive ones."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable

import pytest
import yaml

from sessions_api.core.resources import spec_path
from tests.support.node_tools import ROOT, run

GATE = str(ROOT / "tools" / "breaking-changes.mjs")
pytestmark = [pytest.mark.node, pytest.mark.usefixtures("node_tools")]


def base_spec() -> dict:
    return yaml.safe_load(spec_path().read_text())


def _list(spec: dict) -> dict:
    return spec["paths"]["/sessions"]["get"]


def _session(spec: dict) -> dict:
    return spec["components"]["schemas"]["Session"]


def _device(spec: dict) -> dict:
    return spec["components"]["schemas"]["SessionDevice"]


def with_region_filter(required: bool = False, enum: list[str] | None = None) -> Callable[[dict], None]:
    """A hypothetical `region` query parameter of `GET /sessions`."""

    def change(spec: dict) -> None:
        schema = {"type": "string", "maxLength": 32, **({"enum": enum} if enum else {})}
        _list(spec)["parameters"].append(
            {
                "name": "region",
                "in": "query",
                "required": required,
                "description": "Only this region.",
                "schema": schema,
            }
        )

    return change


def with_notes_operation(*required: str, extra: dict | None = None) -> Callable[[dict], None]:
    """A hypothetical `POST /sessions/{sessionId}/notes` with a JSON body, which the
    request-body cases start from."""

    def change(spec: dict) -> None:
        operation = copy.deepcopy(spec["paths"]["/sessions/{sessionId}"]["get"])
        operation["operationId"] = "annotateSession"
        body = {
            "type": "object",
            "additionalProperties": False,
            "properties": {"note": {"type": "string", "maxLength": 200}, **(extra or {})},
        }
        if required:
            body["required"] = list(required)
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        spec["paths"]["/sessions/{sessionId}/notes"] = {"post": operation}

    return change


def rename(properties: dict, required: list, old: str, new: str) -> None:
    properties[new] = properties.pop(old)
    required[required.index(old)] = new


def gate(tmp_path, change: Callable[[dict], None], start: Callable[[dict], None] | None = None):
    before = base_spec()
    if start:
        start(before)
    after = copy.deepcopy(before)
    change(after)
    (tmp_path / "before.yaml").write_text(yaml.safe_dump(before, sort_keys=False))
    (tmp_path / "after.yaml").write_text(yaml.safe_dump(after, sort_keys=False))
    return run(
        [
            "node",
            GATE,
            "--before",
            str(tmp_path / "before.yaml"),
            "--after",
            str(tmp_path / "after.yaml"),
            "--accepted",
            str(tmp_path / "none.yaml"),
        ]
    )


BREAKING = {
    "removed operation": (
        None,
        lambda s: s["paths"].pop("/sessions/{sessionId}"),
        "GET /sessions/{sessionId}: operation removed",
    ),
    "removed response property": (
        None,
        lambda s: (_session(s)["properties"].pop("releasedAt"), _session(s)["required"].remove("releasedAt")),
        "GET /sessions/{sessionId}: response 200 releasedAt: property removed",
    ),
    "renamed response property": (
        None,
        lambda s: rename(_device(s)["properties"], _device(s)["required"], "osVersion", "os_version"),
        "GET /sessions: response 200 data[].device.osVersion: property removed",
    ),
    "new required query parameter": (
        None,
        with_region_filter(required=True),
        "GET /sessions: query parameter `region` added (required)",
    ),
    "optional parameter made required": (
        with_region_filter(),
        lambda s: _list(s)["parameters"][-1].update(required=True),
        "GET /sessions: query parameter `region`: required added (true)",
    ),
    "new required request property": (
        with_notes_operation(),
        with_notes_operation("reason", extra={"reason": {"type": "string", "maxLength": 64}}),
        "POST /sessions/{sessionId}/notes: request body: property 'reason' made required",
    ),
    "optional request property made required": (
        with_notes_operation(),
        with_notes_operation("note"),
        "POST /sessions/{sessionId}/notes: request body: property 'note' made required",
    ),
    "narrowed request enum": (
        with_region_filter(enum=["eu", "us"]),
        lambda s: _list(s)["parameters"][-1]["schema"].update(enum=["eu"]),
        "GET /sessions: query parameter `region`: enum value 'us' removed: the server accepts fewer values",
    ),
    "widened response enum": (
        None,
        lambda s: s["components"]["schemas"]["SessionList"]["properties"]["object"]["enum"].append("page"),
        "GET /sessions: response 200 object: enum value 'page' added: the server may send more values",
    ),
    "lowered maximum": (
        None,
        lambda s: s["components"]["parameters"]["Limit"]["schema"].update(maximum=100),
        "GET /sessions: query parameter `limit`: maximum changed 500 → 100: the server accepts fewer values",
    ),
    "raised minimum": (
        None,
        lambda s: s["components"]["parameters"]["Limit"]["schema"].update(minimum=10),
        "GET /sessions: query parameter `limit`: minimum changed 1 → 10: the server accepts fewer values",
    ),
    "changed response property type": (
        None,
        lambda s: _session(s)["properties"]["createdAt"].update(type="integer", format="int64"),
        "GET /sessions/{sessionId}: response 200 createdAt: type changed 'string' → 'integer'",
    ),
    "changed query parameter type": (
        None,
        lambda s: s["components"]["parameters"]["Before"]["schema"].update(type="integer", format="int64"),
        "GET /sessions: query parameter `before`: type changed 'string' → 'integer'",
    ),
    "response property made nullable": (
        None,
        lambda s: _session(s)["properties"]["createdAt"].update(nullable=True),
        "GET /sessions/{sessionId}: response 200 createdAt: nullable added (true): the server may send more values",
    ),
    "nested response property made nullable": (
        None,
        lambda s: _device(s)["properties"]["name"].update(nullable=True),
        "GET /sessions: response 200 data[].device.name: nullable added (true): the server may send more values",
    ),
    "response property made optional": (
        None,
        lambda s: _session(s)["required"].remove("device"),
        "GET /sessions/{sessionId}: response 200: property 'device' no longer required",
    ),
    "removed response header": (
        None,
        lambda s: s["components"]["responses"]["Unauthenticated"]["headers"].pop("WWW-Authenticate"),
        "GET /sessions: response 401 header WWW-Authenticate removed",
    ),
    "removed documented status": (
        None,
        lambda s: spec_get_session(s)["responses"].pop("404"),
        "GET /sessions/{sessionId}: response 404 removed",
    ),
    "pattern added to a path parameter": (
        None,
        lambda s: s["components"]["parameters"]["SessionId"]["schema"].update(pattern="^[0-9a-f-]{36}$"),
        "GET /sessions/{sessionId}: path parameter `sessionId`: pattern changed",
    ),
}


def spec_get_session(spec: dict) -> dict:
    return spec["paths"]["/sessions/{sessionId}"]["get"]


@pytest.mark.parametrize("case", BREAKING, ids=list(BREAKING))
def test_the_gate_fails_with_a_readable_list_on_a_breaking_change(tmp_path, case):
    start, change, expected_line = BREAKING[case]
    done = gate(tmp_path, change, start)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BREAKING  " in done.stdout and expected_line in done.stdout, done.stdout
    assert "would break existing clients" in done.stdout


NOT_BREAKING = {
    "no change": (None, lambda s: None),
    "documentation only": (None, lambda s: spec_get_session(s).update(description="Reworded.")),
    "new optional query parameter": (None, with_region_filter()),
    "new operation": (None, with_notes_operation("note")),
    "new response property": (
        None,
        lambda s: _session(s)["properties"].update(note={"type": "string", "maxLength": 200, "nullable": True}),
    ),
    "new optional request property": (
        with_notes_operation(),
        with_notes_operation(extra={"reason": {"type": "string", "maxLength": 64}}),
    ),
    "widened request enum": (
        with_region_filter(enum=["eu"]),
        lambda s: _list(s)["parameters"][-1]["schema"].update(enum=["eu", "us"]),
    ),
    "raised maximum": (None, lambda s: s["components"]["parameters"]["Limit"]["schema"].update(maximum=1000)),
    "nullable removed from a response property": (
        None,
        lambda s: _session(s)["properties"]["releasedAt"].pop("nullable"),
    ),
    "maxLength lowered on a response property": (
        None,
        lambda s: _device(s)["properties"]["name"].update(maxLength=100),
    ),
    "new documented status": (
        None,
        lambda s: _list(s)["responses"].update({"404": {"$ref": "#/components/responses/NotFound"}}),
    ),
}


@pytest.mark.parametrize("case", NOT_BREAKING, ids=list(NOT_BREAKING))
def test_the_gate_passes_a_change_no_client_notices(tmp_path, case):
    start, change = NOT_BREAKING[case]
    done = gate(tmp_path, change, start)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No breaking changes" in done.stdout, done.stdout


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    """A git repository holding the spec at its first commit."""
    (tmp_path / "openapi").mkdir()
    (tmp_path / "openapi" / "sessions.yaml").write_bytes(spec_path().read_bytes())
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(
        tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "empty"
    )
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "spec")
    return tmp_path


def _gate_ref(repo, ref="HEAD"):
    return run(
        [
            "node",
            GATE,
            ref,
            "--spec",
            str(repo / "openapi" / "sessions.yaml"),
            "--accepted",
            str(repo / "openapi" / "accepted.yaml"),
        ]
    )


def _edit(repo, change: Callable[[dict], None]) -> None:
    path = repo / "openapi" / "sessions.yaml"
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_against_a_git_ref_a_break_fails_until_the_major_version_is_bumped(repo):
    assert _gate_ref(repo).returncode == 0
    _edit(repo, lambda s: s["paths"].pop("/sessions/{sessionId}"))
    failed = _gate_ref(repo)
    assert failed.returncode == 1 and "BREAKING  GET /sessions/{sessionId}" in failed.stdout, failed.stdout
    _edit(repo, lambda s: s["info"].update(version="2.0.0"))
    passed = _gate_ref(repo)
    assert passed.returncode == 0, passed.stdout
    assert "accepted  GET /sessions/{sessionId}" in passed.stdout and "major version bump" in passed.stdout


def test_an_accepted_change_passes_only_under_a_new_version(repo):
    _edit(repo, lambda s: s["components"]["parameters"]["Limit"]["schema"].update(maximum=400))
    # Limit is shared: the change reaches every list operation, and each is listed.
    lines = [
        f"{operation}: query parameter `limit`: maximum changed 500 → 400: the server accepts fewer values"
        for operation in (
            "GET /sessions",
            "GET /session-requests",
            "GET /devices",
            "GET /organizations/{organizationId}/members",
            "GET /organizations/{organizationId}/invitations",
            "GET /me/invitations",
            "GET /api-keys",
            "GET /audit-events",
            "GET /webhook-endpoints",
            "GET /webhook-endpoints/{endpointId}/deliveries",
            "GET /sessions/{sessionId}/artifacts",
            "GET /events",
        )
    ]
    version = base_spec()["info"]["version"]
    accepted = {version: [{"change": line, "reason": "No client asks for more than 400."} for line in lines]}
    (repo / "openapi" / "accepted.yaml").write_text(yaml.safe_dump(accepted, allow_unicode=True))
    # Listed under the version the base already has: an old acceptance does not carry over.
    assert _gate_ref(repo).returncode == 1
    major, minor, _patch = (int(part) for part in version.split("."))
    new_version = f"{major}.{minor + 1}.0"
    _edit(repo, lambda s: s["info"].update(version=new_version))
    (repo / "openapi" / "accepted.yaml").write_text(
        yaml.safe_dump({new_version: accepted[version]}, allow_unicode=True)
    )
    passed = _gate_ref(repo)
    assert passed.returncode == 0, passed.stdout
    assert "No client asks for more than 400." in passed.stdout
    # The acceptance names the change exactly: another break under the same version still fails.
    _edit(repo, lambda s: s["components"]["parameters"]["Limit"]["schema"].update(maximum=300))
    assert _gate_ref(repo).returncode == 1


def test_a_spec_missing_at_the_base_passes_and_a_bad_ref_is_a_usage_error(repo):
    assert _gate_ref(repo, "HEAD~1").returncode == 0  # the first commit had no spec
    bad = _gate_ref(repo, "no-such-ref")
    assert bad.returncode == 2 and "no-such-ref is not a commit" in bad.stderr


def test_the_committed_acceptances_are_well_formed():
    accepted = yaml.safe_load((ROOT / "openapi" / "accepted-breaking-changes.yaml").read_text()) or {}
    for version, entries in accepted.items():
        assert isinstance(version, str) and version.count(".") == 2, version
        for entry in entries:
            assert set(entry) == {"change", "reason"} and entry["reason"].strip(), entry
