"""Schemathesis against a real server process, with response validation on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from sessions_api.core.resources import spec_path
from tests.contract.test_spec import SIGNED_URL_STATUSES, STATUSES
from tests.support.api import UNREACHABLE_HOOK
from tests.support.artifacts import API, Payload, attach
from tests.support.live_server import api_call, cli_json, running_server, server_env

pytestmark = pytest.mark.live_server

ST = str(Path(sys.executable).parent / "st")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", "test-artifacts"))


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, database_url_for_module):
    """A server holding two organizations with sessions, an admin of one with an unbound key
    (so that every operation can succeed), and a user with the email of the spec's examples."""
    workdir = tmp_path_factory.mktemp("contract")
    # Budgets above what the run sends: the no-credentials check below sends far more failed
    # authentications a minute than one address may, and the run more requests than one key may
    # (the budgets have tests of their own: tests/api/test_rate_limits.py).
    # Webhooks: the webhook sender looks for due deliveries at start only, so that the endpoints
    # Schemathesis makes (with whatever hosts it generates) are never sent the events of the
    # sessions it starts; testWebhookEndpoint sends to the fixture's unresolvable host only.
    env = server_env(
        database_url_for_module,
        SESSIONS_API_VALIDATE_RESPONSES="true",
        SESSIONS_API_AUTH_FAILURE_LIMIT="100000/minute",
        SESSIONS_API_RATE_LIMIT="100000/minute",
        SESSIONS_API_RATE_LIMIT_PER_USER="100000/minute",
        SESSIONS_API_RATE_LIMIT_PER_ORGANIZATION="100000/minute",
        SESSIONS_API_WEBHOOK_POLL_SECONDS="3600",
        SESSIONS_API_WEBHOOK_TIMEOUT_SECONDS="2",
        SESSIONS_API_ARTIFACT_STORE=f"file://{workdir / 'artifacts'}",
    )
    alice = cli_json(env, "user", "create", "--email", "alice@example.com")
    bob = cli_json(env, "user", "create", "--email", "bob@example.com")
    team = cli_json(env, "org", "create", "--name", "Team")
    cli_json(env, "member", "add", "--org", team["id"], "--user", alice["id"], "--role", "admin")
    cli_json(env, "user", "create", "--email", "tester@example.com")  # the examples' invitee
    fleet = [
        cli_json(env, "device", "add", "--platform", platform, "--type", kind, "--name", name, "--os-version", version)
        for platform, kind, name, version in [
            ("ios", "simulator", "iPhone 16", "18.2"),
            ("android", "emulator", "Pixel 9", "15"),
        ]
        * 15
    ]
    lines = []
    for index in range(40):
        owner, organization = (alice, team["id"]) if index % 2 else (bob, bob["defaultOrganization"])
        record = {
            "organization": organization,
            "user": owner["id"],
            "device": fleet[index % len(fleet)]["id"],
            "createdAt": f"2026-01-01T00:00:{index:02d}Z",
        }
        if index % 3 or index >= len(fleet):  # a few live sessions, each on a device of its own
            record["releasedAt"] = f"2026-01-01T00:01:{index:02d}Z"
        lines.append(json.dumps(record))
    (workdir / "sessions.jsonl").write_text("\n".join(lines))
    cli_json(env, "session", "import", str(workdir / "sessions.jsonl"))
    offline = cli_json(
        env, "device", "add", "--platform", "ios", "--type", "physical", "--name", "iPhone SE", "--os-version", "17.5"
    )
    cli_json(env, "device", "disable", offline["id"])
    key = cli_json(env, "key", "create", "--user", alice["id"])
    # Bob's organization, which invites Alice: the invitation the key's user answers.
    other = cli_json(env, "org", "create", "--name", "Other")
    cli_json(env, "member", "add", "--org", other["id"], "--user", bob["id"], "--role", "admin")
    # And a second one: an address has one pending invitation per organization.
    another = cli_json(env, "org", "create", "--name", "Another")
    cli_json(env, "member", "add", "--org", another["id"], "--user", bob["id"], "--role", "admin")
    bobs_key = cli_json(env, "key", "create", "--user", bob["id"])
    leaver = cli_json(env, "user", "create", "--email", "leaver@example.com")
    cli_json(env, "member", "add", "--org", team["id"], "--user", leaver["id"], "--role", "readonly")
    with running_server(env, log_path=workdir / "server.log") as (base, _process):
        admin = {"Authorization": f"Bearer {key['secret']}", "X-Organization-Id": team["id"]}
        endpoints = [
            api_call(base, admin, "POST", "/webhook-endpoints", {"url": UNREACHABLE_HOOK, "events": [event]})
            for event in ("session.released", "session.expired")
        ]
        bob_headers = {"Authorization": f"Bearer {bobs_key['secret']}"}
        to_alice = {"email": "alice@example.com", "role": "readonly"}
        invitation, to_decline = (
            api_call(base, bob_headers, "POST", f"/organizations/{organization['id']}/invitations", to_alice)
            for organization in (other, another)
        )
        to_revoke = api_call(
            base, admin, "POST", f"/organizations/{team['id']}/invitations", {**to_alice, "email": "x@example.com"}
        )
        live, releasable = api_call(base, admin, "GET", "/sessions?status=live&limit=2", None)["data"]
        # A start waiting for the offline device: it stays queued until cancelled.
        waiting = {"platform": "ios", "name": "iPhone SE", "queue": {"maxWaitSeconds": 1800}}
        queued = api_call(base, admin, "POST", "/sessions", waiting)
        assert queued["status"] == "queued", queued
        # A session with artifacts: one available (to read, complete again and download), one to delete.
        with_artifacts = api_call(base, admin, "POST", "/sessions", {"platform": "android"})
        client = httpx.Client(base_url=base.removesuffix(API), headers=admin, timeout=30)
        available, deletable = (
            attach(client, {}, with_artifacts["id"], Payload(b"screen" * 100, type="screenshot", name=name))
            for name in ("shot.png", "other.png")
        )
        shown = client.get(f"{API}/sessions/{with_artifacts['id']}/artifacts/{available['id']}").json()
        never_sent = Payload(b"the bytes no generated body is" * 1000).declared()
        pending = client.post(f"{API}/sessions/{with_artifacts['id']}/artifacts", json=never_sent).json()
        # Named in schemathesis.toml.
        ids = {
            "LIVE_SESSION_ID": live["id"],
            "RELEASABLE_SESSION_ID": releasable["id"],
            "WEBHOOK_ENDPOINT_ID": endpoints[0]["id"],
            "WEBHOOK_TEST_ENDPOINT_ID": endpoints[1]["id"],
            "TEAM_ID": team["id"],
            "INVITATION_ID": invitation["id"],
            "DECLINABLE_INVITATION_ID": to_decline["id"],
            "LEAVER_ID": leaver["id"],
            "REVOCABLE_INVITATION_ID": to_revoke["id"],
            "QUEUED_REQUEST_ID": queued["id"],
            "ARTIFACT_SESSION_ID": with_artifacts["id"],
            "ARTIFACT_ID": available["id"],
            "DELETABLE_ARTIFACT_ID": deletable["id"],
            "DOWNLOAD_TOKEN": shown["download"]["url"].rsplit("/", 1)[-1],
            "UPLOAD_TOKEN": pending["upload"]["url"].rsplit("/", 1)[-1],
        }
        yield base, key["secret"], team["id"], workdir, ids


def test_schemathesis_finds_nothing_with_a_real_key(live_api):
    base, secret, team_id, workdir, endpoint_ids = live_api
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    command = [
        ST,
        "--config-file",
        str(Path(__file__).parent / "schemathesis.toml"),
        "run",
        str(spec_path()),
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {secret}",
        # The team: generated ids would only ever be refused (org selection has its own tests),
        # and every operation should be exercised with real data. Operations whose path names
        # the organization do not read the header; links give them real ones.
        "--header",
        f"X-Organization-Id: {team_id}",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "80"),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "20261128"),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--request-timeout",
        "10",
        "--workers",
        "1",  # 2 trips a thread-safety bug in ast.parse on 3.11
        "--report",
        "junit",
        "--report-dir",
        str(ARTIFACTS / "schemathesis"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, **endpoint_ids})
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    summary = report.split("SUMMARY")[-1]
    assert "Failures:" not in summary and " passed" in summary, report
    operations = len(STATUSES) + len(SIGNED_URL_STATUSES)
    assert f"{operations} selected / {operations} total" in report, report
    server_log = (workdir / "server.log").read_text()
    assert "Traceback" not in server_log, server_log


_INVISIBLE = "".join(chr(code) for code in range(33)) + "\x7f"


def _routable(path: str) -> bool:
    decoded = [urllib.parse.unquote(segment) for segment in path.split("/")[1:]]
    segments = [segment.strip().strip(_INVISIBLE) for segment in decoded]
    # Routing matches no segment with a line break in it either (`/sessions/0%0A` is a 404 too).
    return all(segment not in {"", ".", ".."} and "/" not in segment for segment in segments) and not any(
        "\n" in segment or "\r" in segment for segment in decoded
    )


def test_every_operation_rejects_requests_without_credentials(live_api):
    base, _secret, _team_id, _workdir, _endpoint_ids = live_api
    schema = schemathesis.openapi.from_path(str(spec_path()))
    every = [result.ok() for result in schema.get_all_operations()]
    assert len(every) == len(STATUSES) + len(SIGNED_URL_STATUSES)  # every operation of the spec
    # Not those at signed URLs, whose signature is the credential (tests/api/test_artifacts.py).
    operations = [operation for operation in every if operation.definition.raw["operationId"] in STATUSES]
    strategies = [
        op.as_strategy(mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    statuses = set()

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        case = data.draw(st.sampled_from(strategies).flatmap(lambda strategy: strategy))
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        # A sessionId that is empty, has a `/` or is a dot segment (negative examples) makes a
        # path of no operation at all, and routing answers 404 before any security applies;
        # so does one of whitespace or control characters only, which the client strips, and
        # one with a line break.
        assume(_routable(case.formatted_path))
        response = case.call(base_url=base)
        statuses.add(response.status_code)
        # Security runs before validation: without a key, nothing else is even looked at.
        assert response.status_code == 401, (case.path, case.query, response.text)
        headers = {name.lower(): value for name, value in response.headers.items()}
        assert headers["www-authenticate"] in ("Bearer", ["Bearer"])
        assert response.json()["error"]["code"] == "unauthenticated"

    check()
    assert statuses == {401}
