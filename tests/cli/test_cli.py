"""The `sessions-api` operator command."""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sessions_api.cli.commands import main
from sessions_api.core.settings import Settings
from sessions_api.web.app import create_app


@pytest.fixture
def cli(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    def run_json(*argv: str) -> dict:
        code, out, err = run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    run.json = run_json
    return run


def test_operators_can_set_up_an_organization_end_to_end(cli, database_url, tmp_path):
    alice = cli.json("user", "create", "--email", "alice@example.com", "--name", "Alice")
    bob = cli.json("user", "create", "--email", "bob@example.com")
    team = cli.json("org", "create", "--name", "Acme QA")
    assert (
        cli.json("member", "add", "--org", team["id"], "--user", bob["id"], "--role", "readonly")["role"] == "readonly"
    )
    cli.json("member", "add", "--org", team["id"], "--user", alice["id"], "--role", "admin")
    device = cli.json(
        "device", "add", "--platform", "ios", "--type", "simulator", "--name", "iPhone 16", "--os-version", "18.2"
    )
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text(
        "\n".join(
            json.dumps(
                {
                    "organization": team["id"],
                    "user": alice["id"],
                    "device": device["id"],
                    "createdAt": f"2026-01-01T00:00:0{n}Z",
                    "releasedAt": f"2026-01-01T00:01:0{n}Z",
                }
            )
            for n in range(3)
        )
        + "\n"
    )
    assert cli.json("session", "import", str(sessions)) == {"imported": 3}
    key = cli.json("key", "create", "--user", bob["id"], "--org", team["id"], "--name", "ci")
    assert key["secret"].startswith("sapi_") and key["organization"] == team["id"]

    with TestClient(create_app(Settings(database_url=database_url, validate_responses=True))) as client:
        headers = {"Authorization": f"Bearer {key['secret']}"}
        body = client.get("/api/v1/sessions", headers=headers).json()
        assert [s["organization"] for s in body["data"]] == [team["id"]] * 3
        assert cli.json("key", "revoke", key["id"])["id"] == key["id"]
        assert client.get("/api/v1/sessions", headers=headers).status_code == 401


def test_human_output_names_what_was_made(cli):
    code, out, _ = cli("user", "create", "--email", "carol@example.com")
    assert code == 0 and out.startswith("user ") and "default organization" in out
    user_id = out.split()[1]
    code, out, _ = cli("key", "create", "--user", user_id)
    assert code == 0 and "shown once" in out and "sapi_" in out


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        ((), 2, "required"),
        (("user", "create"), 2, "--email"),
        (("member", "add", "--org", "x", "--user", "y", "--role", "admin"), 2, "is not a UUID"),
        (
            (
                "member",
                "add",
                "--org",
                "00000000-0000-0000-0000-000000000001",
                "--user",
                "00000000-0000-0000-0000-000000000002",
                "--role",
                "owner",
            ),
            2,
            "invalid choice",
        ),
        (
            (
                "member",
                "add",
                "--org",
                "00000000-0000-0000-0000-000000000001",
                "--user",
                "00000000-0000-0000-0000-000000000002",
                "--role",
                "admin",
            ),
            1,
            "no organization",
        ),
        (("key", "revoke", "00000000-0000-0000-0000-000000000003"), 1, "no API key"),
        (("key", "create", "--user", "00000000-0000-0000-0000-000000000004"), 1, "no user"),
        (("user", "create", "--email", "not-an-email"), 1, "not an email"),
        (("org", "create", "--name", "  "), 1, "1 to 200 characters"),
        (("session", "import", "/no/such/file.jsonl"), 1, "No such file"),
    ],
)
def test_bad_arguments_get_one_line_and_a_nonzero_exit(cli, argv, code, says):
    got, out, err = cli(*argv)
    assert got == code
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""


def test_a_duplicate_email_is_refused(cli):
    cli.json("user", "create", "--email", "dup@example.com")
    code, _, err = cli("user", "create", "--email", "dup@example.com")
    assert code == 1 and "already exists" in err


def test_a_key_is_only_bound_to_an_organization_of_its_user(cli):
    user = cli.json("user", "create", "--email", "dana@example.com")
    team = cli.json("org", "create", "--name", "Not Dana's")
    code, _, err = cli("key", "create", "--user", user["id"], "--org", team["id"])
    assert code == 1 and "member" in err


def test_import_names_the_bad_line_and_imports_nothing(cli, tmp_path):
    user = cli.json("user", "create", "--email", "erin@example.com")
    device = cli.json(
        "device", "add", "--platform", "android", "--type", "emulator", "--name", "Pixel", "--os-version", "15"
    )
    good = json.dumps(
        {
            "organization": user["defaultOrganization"],
            "user": user["id"],
            "device": device["id"],
            "createdAt": "2026-01-01T00:00:00Z",
            "releasedAt": "2026-01-01T00:30:00Z",
        }
    )
    path = tmp_path / "bad.jsonl"
    path.write_text(f'{good}\n{good}\n{{"organization": 1}}\n')
    code, _, err = cli("session", "import", str(path))
    assert code == 1 and "line 3" in err
    path.write_text(f"{good}\n")
    assert cli.json("session", "import", str(path)) == {"imported": 1}


def test_a_fleet_is_imported_from_json_lines_all_or_nothing(cli, database_url, tmp_path):
    fleet = [{"platform": "ios", "type": "simulator", "name": f"iPhone {n}", "osVersion": "18.2"} for n in range(5)] + [
        {"platform": "android", "type": "emulator", "name": "Pixel 9", "osVersion": "15"}
    ]
    path = tmp_path / "fleet.jsonl"
    bad = {"platform": "ios", "type": "simulator", "name": "iPhone\u202e", "osVersion": "18.2"}
    path.write_text("".join(json.dumps(device) + "\n" for device in [*fleet, bad]))
    code, _, err = cli("device", "import", str(path))
    assert code == 1 and "line 7" in err and "bidirectional" in err
    path.write_text("".join(json.dumps(device) + "\n" for device in fleet) + "\n")
    assert cli.json("device", "import", str(path)) == {"imported": 6}
    user = cli.json("user", "create", "--email", "fleet@example.com")
    key = cli.json("key", "create", "--user", user["id"], "--org", user["defaultOrganization"], "--name", "fleet")
    with TestClient(create_app(Settings(database_url=database_url, validate_responses=True))) as client:
        headers = {"Authorization": f"Bearer {key['secret']}"}
        listed = client.get("/api/v1/devices", params={"limit": 100}, headers=headers).json()["data"]
    shown = [{name: device[name] for name in ("platform", "type", "name", "osVersion")} for device in listed]
    assert sorted(shown, key=str) == sorted(fleet, key=str)  # only these: the bad file added nothing
    assert len({device["createdAt"] for device in listed}) == len(fleet)
    assert all(device["state"] == "available" for device in listed)


@pytest.mark.live_server
def test_the_installed_command_never_prints_a_traceback(database_url, tmp_path):
    command = shutil.which("sessions-api", path=str(Path(sys.executable).parent))
    assert command, "the sessions-api console script is not installed"
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [command, "user", "create", "--email", "nope"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "sessions-api: error: 'nope' is not an email address"
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/missing-dir/x.db"
    done = subprocess.run(
        [command, "org", "create", "--name", "x"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_devices_can_be_taken_offline_and_back(cli):
    device = cli.json(
        "device", "add", "--platform", "android", "--type", "physical", "--name", "Pixel 9", "--os-version", "15"
    )
    assert cli.json("device", "disable", device["id"]) == {"id": device["id"], "disabled": True}
    assert cli.json("device", "enable", device["id"]) == {"id": device["id"], "disabled": False}
    code, _, err = cli("device", "disable", "00000000-0000-0000-0000-000000000009")
    assert code == 1 and "no device" in err
    code, _, err = cli("device", "add", "--platform", "windows", "--type", "x", "--name", "y", "--os-version", "1")
    assert code == 1 and "platform must be one of ios, android" in err


def test_keys_made_with_an_expiry_fail_from_then_on(cli, database_url, monkeypatch):
    user = cli.json("user", "create", "--email", "fay@example.com")
    key = cli.json("key", "create", "--user", user["id"], "--expires-at", "2999-01-01T00:00:00+01:00")
    assert key["expiresAt"] == "2998-12-31T23:00:00.000000Z"
    code, _, err = cli("key", "create", "--user", user["id"], "--expires-at", "2000-01-01T00:00:00Z")
    assert code == 1 and "expiresAt must be in the future" in err
    code, _, err = cli("key", "create", "--user", user["id"], "--expires-at", "2999-01-01T00:00:00")
    assert code == 2 and "not an RFC 3339 timestamp" in err
    with TestClient(create_app(Settings(database_url=database_url, validate_responses=True))) as client:
        headers = {"Authorization": f"Bearer {key['secret']}"}
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        monkeypatch.setattr("sessions_api.models.api_keys.utcnow", lambda: datetime(2999, 1, 1, tzinfo=UTC))
        assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_the_operators_changes_are_in_the_audit_log_with_no_user_and_no_key(cli, database_url):
    alice = cli.json("user", "create", "--email", "alice@example.com")
    bob = cli.json("user", "create", "--email", "bob@example.com")
    team = cli.json("org", "create", "--name", "Team")
    cli.json("member", "add", "--org", team["id"], "--user", alice["id"], "--role", "admin")
    cli.json("member", "add", "--org", team["id"], "--user", bob["id"], "--role", "readonly")
    cli.json("member", "add", "--org", team["id"], "--user", bob["id"], "--role", "readonly")  # no change
    cli.json("member", "add", "--org", team["id"], "--user", bob["id"], "--role", "readwrite")
    key = cli.json("key", "create", "--user", alice["id"], "--org", team["id"])
    cli.json("key", "revoke", key["id"])
    cli.json("key", "revoke", key["id"])  # no change
    admin_key = cli.json("key", "create", "--user", alice["id"])
    code, _, err = cli("member", "add", "--org", team["id"], "--user", alice["id"], "--role", "readonly")
    assert code == 1 and "last admin" in err

    with TestClient(create_app(Settings(database_url=database_url, validate_responses=True))) as client:
        headers = {"Authorization": f"Bearer {admin_key['secret']}", "X-Organization-Id": team["id"]}
        events = client.get("/api/v1/audit-events", headers=headers).json()["data"]
    assert [(event["type"], event["target"]["id"]) for event in reversed(events)] == [
        ("organization.created", team["id"]),
        ("member.added", alice["id"]),
        ("member.added", bob["id"]),
        ("member.role_changed", bob["id"]),
        ("key.created", key["id"]),
        ("key.revoked", key["id"]),
    ]
    assert {(event["origin"], json.dumps(event["actor"])) for event in events} == {
        ("cli", json.dumps({"user": None, "key": None}))
    }


def test_usage_prints_what_the_api_answers(cli, database_url, tmp_path):
    """`sessions-api usage` shows an organization's device minutes as getUsage does: JSON, CSV,
    and a table for people."""
    admin = cli.json("user", "create", "--email", "uma@example.com")
    team = cli.json("org", "create", "--name", "Usage QA")
    cli.json("member", "add", "--org", team["id"], "--user", admin["id"], "--role", "admin")
    device = cli.json(
        "device", "add", "--platform", "ios", "--type", "phone", "--name", "iPhone 16", "--os-version", "18.2"
    )
    lines = tmp_path / "sessions.jsonl"
    lines.write_text(  # 23:30 to 00:45: half an hour on the 1st, three quarters on the 2nd
        json.dumps(
            {
                "organization": team["id"],
                "user": admin["id"],
                "device": device["id"],
                "createdAt": "2026-01-01T23:30:00Z",
                "releasedAt": "2026-01-02T00:45:00Z",
            }
        )
        + "\n"
    )
    cli.json("session", "import", str(lines))
    key = cli.json("key", "create", "--user", admin["id"])
    query = ["--org", team["id"], "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-03T00:00:00Z"]
    params = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z", "groupBy": "platform"}
    with TestClient(create_app(Settings(database_url=database_url, validate_responses=True))) as client:
        path = f"/api/v1/organizations/{team['id']}/usage"
        headers = {"Authorization": f"Bearer {key['secret']}"}
        as_json = client.get(path, params=params, headers=headers).json()
        as_csv = client.get(path, params=params, headers={**headers, "Accept": "text/csv"}).text
    assert cli.json("usage", *query, "--group-by", "platform") == as_json
    assert [row["deviceMinutes"] for row in as_json["data"]] == [30.0, 45.0]
    code, out, _ = cli("usage", *query, "--group-by", "platform", "--csv")
    assert code == 0 and out == as_csv
    code, out, _ = cli("usage", *query)
    assert code == 0
    assert [line[58:] for line in out.splitlines()] == [  # after the two instants' columns
        "sessions  deviceMinutes  peakConcurrency  artifactBytes",
        "       1          30.00                1              0",
        "       0          45.00                1              0",
    ]
    assert out.splitlines()[1].startswith("2026-01-01T00:00:00.000000Z  2026-01-02T00:00:00.000000Z  ")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--org", "00000000-0000-0000-0000-000000000001"], "no organization"),
        (["--org", "{team}", "--granularity", "hour", "--to", "2027-01-01T00:00:00Z"], "more than 1000 hour buckets"),
    ],
)
def test_usage_refuses_in_one_line(cli, extra, says):
    team = cli.json("org", "create", "--name", "Usage refusals")
    argv = ["usage", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"]
    code, out, err = cli(*argv, *[arg.format(team=team["id"]) for arg in extra])
    assert code == 1 and says in err.lower() and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_the_operator_sets_a_plan_and_puts_the_default_back(cli):
    team = cli.json("org", "create", "--name", "Planned")
    assert cli.json("org", "plan", "--org", team["id"], "--max-live", "3") == {
        "id": team["id"],
        "plan": {
            "maxLiveSessions": 3,
            "maxQueuedSessions": 100,
            "maxStorageBytes": 50 * 1024**3,
            "artifactRetentionDays": 30,
        },
    }
    # Each limit changes alone; the other stays as it was.
    assert cli.json("org", "plan", "--org", team["id"], "--max-queued", "0")["plan"]["maxQueuedSessions"] == 0
    storage = ["--max-storage-bytes", "1000000", "--artifact-retention-days", "0.25"]
    assert cli.json("org", "plan", "--org", team["id"], *storage)["plan"] == {
        "maxLiveSessions": 3,
        "maxQueuedSessions": 0,
        "maxStorageBytes": 1_000_000,
        "artifactRetentionDays": 0.25,
    }
    back = ["--max-live", "default", "--max-queued", "default", "--max-storage-bytes", "default"]
    assert cli.json("org", "plan", "--org", team["id"], *back, "--artifact-retention-days", "default")["plan"] == {
        "maxLiveSessions": 50,
        "maxQueuedSessions": 100,
        "maxStorageBytes": 50 * 1024**3,
        "artifactRetentionDays": 30,
    }
    code, _, err = cli("org", "plan", "--org", team["id"], "--artifact-retention-days", "0")
    assert code == 2 and "above 0" in err
    code, _, err = cli("org", "plan", "--org", team["id"], "--max-live", "0")
    assert code == 2 and "at least 1" in err
    code, _, err = cli("org", "plan", "--org", team["id"], "--max-queued", "10001")
    assert code == 2 and "0 to 10000" in err
    code, _, err = cli("org", "plan", "--org", team["id"])
    assert code == 1 and "--max-live, --max-queued, --max-storage-bytes or --artifact-retention-days" in err
    code, _, err = cli("org", "plan", "--org", "00000000-0000-0000-0000-000000000009", "--max-live", "3")
    assert code == 1 and "No organization" in err


def test_an_import_shows_its_progress_on_a_terminal_and_nothing_in_a_pipe(cli, database_url, tmp_path):
    user = cli.json("user", "create", "--email", "bulk@example.com")
    device = cli.json(
        "device", "add", "--platform", "ios", "--type", "simulator", "--name", "iPhone 16", "--os-version", "18.2"
    )
    count = 12_000
    lines = tmp_path / "bulk.jsonl"
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    lines.write_text(
        "".join(
            json.dumps(
                {
                    "organization": user["defaultOrganization"],
                    "user": user["id"],
                    "device": device["id"],
                    "createdAt": datetime.fromtimestamp(start + 60 * n, UTC).isoformat().replace("+00:00", "Z"),
                    "releasedAt": datetime.fromtimestamp(start + 60 * n + 30, UTC).isoformat().replace("+00:00", "Z"),
                }
            )
            + "\n"
            for n in range(count)
        )
    )
    command = [str(Path(sys.executable).parent / "sessions-api"), "session", "import", "--json"]
    env = {**os.environ, "DATABASE_URL": database_url}
    # Half the file through a pipe on stdin ('-'), stderr a pipe: nothing but the JSON answer.
    half = "".join(lines.read_text().splitlines(keepends=True)[: count // 2])
    piped = subprocess.run([*command, "-"], input=half, capture_output=True, text=True, env=env, timeout=300)
    assert (piped.returncode, json.loads(piped.stdout), piped.stderr) == (0, {"imported": count // 2}, "")
    # The whole file again into a fresh database would do; here: a second file of new rows.
    rest = tmp_path / "rest.jsonl"
    rest.write_text("".join(lines.read_text().splitlines(keepends=True)[count // 2 :]))
    primary, secondary = pty.openpty()
    done = subprocess.run([*command, str(rest)], stdout=subprocess.PIPE, stderr=secondary, env=env, timeout=300)
    os.close(secondary)
    shown = _read_all(primary)
    assert done.returncode == 0 and json.loads(done.stdout) == {"imported": count // 2}
    assert f"{count // 2:,} rows" in shown and "rows/s" in shown and "left" in shown, shown


def _read_all(descriptor: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(descriptor)
    return b"".join(chunks).decode(errors="replace")


def test_the_command_says_its_version_and_every_argument_has_help():
    from sessions_api.cli.commands import build_parser

    parser = build_parser()
    undocumented = []

    def walk(command, path):
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not action.help:
                undocumented.append((" ".join(path), action.dest))

    walk(parser, ["sessions-api"])
    assert undocumented == []
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "sessions-api"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and shown.stdout.startswith("sessions-api ")


def test_the_operator_sweeps_orphaned_artifact_objects_in_bounded_pages(cli, monkeypatch, tmp_path):
    """`artifacts sweep --orphans` lists the whole store in pages (at most --max-objects) and
    deletes the objects no artifact names; without --orphans it lists nothing."""
    store = tmp_path / "store"
    monkeypatch.setenv("SESSIONS_API_ARTIFACT_STORE", f"file://{store}")
    orphans = [store / "objects" / f"{uuid.uuid4()}" / f"{uuid.uuid4()}" / f"{uuid.uuid4()}" for _ in range(3)]
    for path in orphans:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"left behind")
    assert cli.json("artifacts", "sweep") == {"expired": 0, "failed": 0, "listed": 0, "orphansRemoved": 0}
    assert all(path.exists() for path in orphans)
    assert cli.json("artifacts", "sweep", "--orphans", "--max-objects", "2")["orphansRemoved"] == 2
    assert cli.json("artifacts", "sweep", "--orphans") == {"expired": 0, "failed": 0, "listed": 1, "orphansRemoved": 1}
    assert not any(path.exists() for path in orphans)
