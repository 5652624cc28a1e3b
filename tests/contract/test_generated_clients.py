"""Clients generated from the contract work, unedited: a Python client by openapi-python-client
against a live server, and TypeScript types by openapi-typescript checked by `tsc`."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.live_server import cli_json, running_server, server_env
from tests.support.node_tools import ROOT, bin_path, run

pytestmark = [pytest.mark.live_server, pytest.mark.node]

GENERATOR = str(Path(sys.executable).parent / "openapi-python-client")
PACKAGE = "sessions_api_client"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, database_url_for_module):
    """A server with seven sessions in Alice's organization (two live) and one in Bob's."""
    workdir = tmp_path_factory.mktemp("clients")
    env = server_env(
        database_url_for_module,
        SESSIONS_API_VALIDATE_RESPONSES="true",
        SESSIONS_API_ARTIFACT_STORE=f"file://{workdir / 'artifacts'}",
    )
    alice = cli_json(env, "user", "create", "--email", "alice@example.com")
    bob = cli_json(env, "user", "create", "--email", "bob@example.com")
    # One device for the released sessions; each live session holds a device of its own.
    device, *spares = (
        cli_json(
            env,
            "device",
            "add",
            "--platform",
            "android",
            "--type",
            "emulator",
            "--name",
            f"Pixel {n}",
            "--os-version",
            "15",
        )
        for n in range(4)
    )
    live_devices = {2: spares[0], 6: spares[1]}
    lines = []
    for index in range(7):
        record = {
            "organization": alice["defaultOrganization"],
            "user": alice["id"],
            "device": live_devices.get(index, device)["id"],
            "createdAt": f"2026-03-01T10:00:0{index}.{index:06d}Z",
        }
        if index in live_devices:
            record["expiresAt"] = "2099-01-01T00:00:00Z"  # live for the whole test
        else:
            record["releasedAt"] = f"2026-03-01T11:00:0{index}Z"
        lines.append(json.dumps(record))
    lines.append(json.dumps({"organization": bob["defaultOrganization"], "user": bob["id"], "device": spares[2]["id"]}))
    (workdir / "sessions.jsonl").write_text("\n".join(lines))
    cli_json(env, "session", "import", str(workdir / "sessions.jsonl"))
    key = cli_json(env, "key", "create", "--user", alice["id"])
    bobs_key = cli_json(env, "key", "create", "--user", bob["id"])
    with running_server(env, log_path=workdir / "server.log") as (base, _process):
        yield {
            "base": base,
            "secret": key["secret"],
            "alice": alice,
            "bob": {**bob, "secret": bobs_key["secret"]},
            "workdir": workdir,
        }
    assert "Traceback" not in (workdir / "server.log").read_text()


@pytest.fixture(scope="module")
def client_package(live_api, tmp_path_factory):
    """openapi-python-client's package, generated from the spec the server serves, imported as is."""
    out = tmp_path_factory.mktemp("generated") / PACKAGE
    done = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--url",
            f"{live_api['base']}/openapi.json",
            "--output-path",
            str(out),
            "--meta",
            "none",
            "--config",
            str(ROOT / "openapi" / "openapi-python-client.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},  # its ruff post-hook, from the venv
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(out.parent))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out.parent))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _modules(package):
    api = importlib.import_module(f"{package.__name__}.api.sessions")
    list_sessions = importlib.import_module(f"{api.__name__}.list_sessions")
    get_session = importlib.import_module(f"{api.__name__}.get_session")
    models = importlib.import_module(f"{package.__name__}.models")
    types = importlib.import_module(f"{package.__name__}.types")
    return list_sessions, get_session, models, types


def test_the_python_client_lists_every_session_by_following_next_cursor(live_api, client_package):
    list_sessions, _get_session, models, types = _modules(client_package)
    client = client_package.AuthenticatedClient(
        base_url=live_api["base"], token=live_api["secret"], raise_on_unexpected_status=True
    )
    seen, cursors = [], []
    before = types.UNSET
    for _ in range(10):
        page = list_sessions.sync(client=client, limit=3, before=before)
        assert isinstance(page, models.SessionList), page
        seen.extend(page.data)
        if isinstance(page.next_cursor, types.Unset):  # absent on the last page
            break
        assert isinstance(page.next_cursor, datetime) and page.next_cursor.tzinfo is not None
        cursors.append(page.next_cursor)
        before = page.next_cursor  # the typed datetime goes back as `before`, exactly
    else:
        pytest.fail("pagination did not end")
    assert len(cursors) == 2 and len(seen) == 7
    assert len({session.id for session in seen}) == 7
    created = [session.created_at for session in seen]
    assert created == sorted(created, reverse=True)
    assert created[-1] == datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
    assert created[0] == datetime(2026, 3, 1, 10, 0, 6, 6, tzinfo=UTC)
    assert {str(session.organization) for session in seen} == {live_api["alice"]["defaultOrganization"]}
    live = [session for session in seen if session.released_at is None]
    assert len(live) == 2
    assert all(isinstance(session.released_at, datetime) for session in seen if session not in live)


def test_the_python_client_gets_one_session_and_its_null_released_at(live_api, client_package):
    list_sessions, get_session, models, _types = _modules(client_package)
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    newest = list_sessions.sync(client=client, limit=1).data[0]
    assert newest.released_at is None  # the newest of the seven is live
    response = get_session.sync_detailed(newest.id, client=client)
    assert response.status_code == 200 and isinstance(response.parsed, models.Session)
    assert response.parsed.to_dict() == newest.to_dict()
    assert response.parsed.to_dict()["releasedAt"] is None
    assert response.parsed.device.os_version == "15"


def test_the_python_client_reports_401_and_404_as_typed_errors(live_api, client_package):
    list_sessions, get_session, models, _types = _modules(client_package)
    stranger = client_package.AuthenticatedClient(base_url=live_api["base"], token="sapi_not-a-key")
    denied = list_sessions.sync_detailed(client=stranger)
    assert denied.status_code == 401 and isinstance(denied.parsed, models.Error)
    assert denied.parsed.error.code == "unauthenticated"
    assert denied.headers["www-authenticate"] == "Bearer"

    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    missing = get_session.sync_detailed(uuid.uuid4(), client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Error)
    assert missing.parsed.error.code == "not_found"
    bobs = list_sessions.sync(
        client=client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"]),
        x_organization_id=live_api["bob"]["defaultOrganization"],
    )
    assert isinstance(bobs, models.Error) and bobs.error.code == "forbidden"


def _client_modules(package, *names):
    """The generated client's modules by dotted name under the package (`api.me.get_me`)."""
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def test_the_python_client_creates_uses_and_revokes_a_key(live_api, client_package):
    create_api_key, list_api_keys, revoke_api_key, get_me, models = _client_modules(
        client_package,
        "api.api_keys.create_api_key",
        "api.api_keys.list_api_keys",
        "api.api_keys.revoke_api_key",
        "api.me.get_me",
        "models",
    )
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    created = create_api_key.sync(client=client, body=models.CreateApiKeyRequest(name="ci"))
    assert isinstance(created, models.NewApiKey) and created.secret.startswith(created.prefix + "_")
    assert created.organization is None and created.revoked_at is None
    with_new_key = client_package.AuthenticatedClient(base_url=live_api["base"], token=created.secret)
    me = get_me.sync(client=with_new_key)
    assert isinstance(me, models.Me) and me.key.id == created.id and str(me.id) == live_api["alice"]["id"]
    listed = list_api_keys.sync(client=client, limit=500)
    assert isinstance(listed, models.ApiKeyList) and created.id in {key.id for key in listed.data}
    assert all("secret" not in key.to_dict() for key in listed.data)
    revoked = revoke_api_key.sync(created.id, client=client)
    assert isinstance(revoked, models.ApiKey) and isinstance(revoked.revoked_at, datetime)
    refused = get_me.sync_detailed(client=with_new_key)
    assert refused.status_code == 401 and refused.parsed.error.code == "unauthenticated"


def test_the_python_client_runs_an_organization_and_reads_its_audit_log(live_api, client_package):
    (
        create_organization,
        create_invitation,
        accept_invitation,
        change_member_role,
        list_members,
        remove_member,
        list_audit_events,
        models,
        types,
    ) = _client_modules(
        client_package,
        "api.organizations.create_organization",
        "api.invitations.create_invitation",
        "api.invitations.accept_invitation",
        "api.members.change_member_role",
        "api.members.list_members",
        "api.members.remove_member",
        "api.audit_log.list_audit_events",
        "models",
        "types",
    )
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    team = create_organization.sync(client=client, body=models.OrganizationNameRequest(name="Clients' team"))
    assert isinstance(team, models.Organization) and team.role == models.Role.ADMIN
    bob = live_api["bob"]
    invited = create_invitation.sync(
        team.id, client=client, body=models.InvitationRequest(email=bob["email"], role=models.Role.READONLY)
    )
    assert isinstance(invited, models.Invitation) and invited.status == models.InvitationStatus.PENDING
    bobs_client = client_package.AuthenticatedClient(base_url=live_api["base"], token=bob["secret"])
    accepted = accept_invitation.sync(invited.id, client=bobs_client)
    assert isinstance(accepted, models.Invitation) and accepted.status == models.InvitationStatus.ACCEPTED
    bob_id = uuid.UUID(bob["id"])
    changed = change_member_role.sync(
        team.id, bob_id, client=client, body=models.ChangeMemberRoleRequest(role=models.Role.READWRITE)
    )
    assert isinstance(changed, models.Member) and changed.role == models.Role.READWRITE
    members = list_members.sync(team.id, client=client)
    assert [str(member.user.id) for member in members.data] == [bob["id"], live_api["alice"]["id"]]
    assert remove_member.sync_detailed(team.id, bob_id, client=client).status_code == 204
    again = accept_invitation.sync(invited.id, client=bobs_client)
    assert isinstance(again, models.Error) and again.error.code == "invitation_not_pending"
    alice = uuid.UUID(live_api["alice"]["id"])
    last = change_member_role.sync(
        team.id, alice, client=client, body=models.ChangeMemberRoleRequest(role=models.Role.READONLY)
    )
    assert isinstance(last, models.Error) and last.error.code == "last_admin"

    events, before = [], types.UNSET
    for _ in range(10):
        page = list_audit_events.sync(client=client, limit=2, before=before, x_organization_id=str(team.id))
        assert isinstance(page, models.AuditEventList), page
        events += page.data
        if isinstance(page.next_cursor, types.Unset):
            break
        before = page.next_cursor
    assert [event.type_ for event in reversed(events)] == [
        models.AuditEventType.ORGANIZATION_CREATED,
        models.AuditEventType.MEMBER_ADDED,
        models.AuditEventType.MEMBER_ADDED,
        models.AuditEventType.MEMBER_ROLE_CHANGED,
        models.AuditEventType.MEMBER_REMOVED,
    ]
    # Bob joined by accepting: that member.added is his act; every other change is Alice's.
    assert [event.actor.user for event in reversed(events) if event.actor is not None] == [
        alice,
        alice,
        bob_id,
        alice,
        alice,
    ]
    assert events[1].data.before.role == models.Role.READONLY and events[1].data.after.role == models.Role.READWRITE


def test_typescript_types_from_openapi_typescript_type_check(tmp_path, node_tools):
    shutil.copy(Path(__file__).parent / "typescript" / "usage.ts", tmp_path / "usage.ts")
    generated = run(
        [bin_path("openapi-typescript"), str(ROOT / "openapi" / "sessions.yaml"), "-o", str(tmp_path / "sessions.ts")]
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    (tmp_path / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "exactOptionalPropertyTypes": True,
                    "noUncheckedIndexedAccess": True,
                    "noEmit": True,
                    "skipLibCheck": True,
                    "target": "es2022",
                    "module": "es2022",
                    "moduleResolution": "bundler",
                    "lib": ["es2022", "dom"],
                    "types": [],
                },
                "files": ["usage.ts"],
            }
        )
    )
    checked = run([bin_path("tsc"), "-p", str(tmp_path / "tsconfig.json")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check bites: a usage the contract forbids fails to compile.
    (tmp_path / "usage.ts").write_text(
        (tmp_path / "usage.ts").read_text() + "\nexport const n: number = live.releasedAt;\n"
    )
    broken = run([bin_path("tsc"), "-p", str(tmp_path / "tsconfig.json")])
    assert broken.returncode != 0 and "usage.ts" in broken.stdout and "null" in broken.stdout, broken.stdout


def test_the_python_client_sets_a_sessions_facts_and_lists_by_them(live_api, client_package):
    list_sessions, get_session, models, _types = _modules(client_package)
    update_session = importlib.import_module(f"{client_package.__name__}.api.sessions.update_session")
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    newest = list_sessions.sync(client=client, limit=1).data[0]
    assert newest.result is None and newest.tags == [] and newest.duration_seconds is None
    metadata = models.SessionMetadata.from_dict({"commit": "4f2a9c1"})
    facts = models.SessionFacts(
        build="client-build", tags=["client", "smoke"], metadata=metadata, result=models.SessionResult.FAILED
    )
    changed = update_session.sync(newest.id, client=client, body=facts)
    assert isinstance(changed, models.Session), changed
    assert changed.result == models.SessionResult.FAILED and changed.tags == ["client", "smoke"]
    assert changed.metadata.to_dict() == {"commit": "4f2a9c1"} and changed.build == "client-build"
    found = list_sessions.sync(
        client=client, build="client-build", tag=["smoke", "client"], result=models.ListSessionsResult.FAILED
    )
    assert [session.id for session in found.data] == [newest.id]
    assert get_session.sync(newest.id, client=client).to_dict() == changed.to_dict()


def test_the_python_client_reads_usage_per_platform(live_api, client_package):
    """Alice's day of 2026-03-01: five sessions of an hour less i µs, and two live ones (started
    at 10:00:02.000002 and 10:00:06.000006) counted to the end of the day, all on android, all at once at 10:00:06."""
    get_usage = importlib.import_module(f"{client_package.__name__}.api.usage.get_usage")
    models = importlib.import_module(f"{client_package.__name__}.models")
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    report = get_usage.sync(
        live_api["alice"]["defaultOrganization"],
        client=client,
        from_=datetime(2026, 3, 1, tzinfo=UTC),
        to=datetime(2026, 3, 2, tzinfo=UTC),
        granularity=models.GetUsageGranularity.DAY,
        group_by=models.GetUsageGroupBy.PLATFORM,
    )
    assert isinstance(report, models.UsageReport), report
    (row,) = report.data
    used_seconds = 5 * 3600 - 13e-6 + (2 * 14 * 3600 - 8.000008)
    assert (row.platform, row.sessions, row.peak_concurrency) == ("android", 7, 7)
    assert row.device_minutes == round(used_seconds / 60, 2) and row.start == datetime(2026, 3, 1, tzinfo=UTC)


def test_the_python_client_reads_the_live_concurrency_and_the_plan(live_api, client_package):
    """Alice's Personal organization holds two live sessions on android (of the four devices,
    one holds Bob's: one is free) under the default plan, which she sees as its admin."""
    organizations = importlib.import_module(f"{client_package.__name__}.api.organizations")
    get_concurrency = importlib.import_module(f"{organizations.__name__}.get_concurrency")
    get_organization = importlib.import_module(f"{organizations.__name__}.get_organization")
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    organization_id = live_api["alice"]["defaultOrganization"]
    view = get_concurrency.sync(organization_id, client=client)
    assert (view.live, view.max_live_sessions) == (2, 50)
    assert [(row.platform.value, row.live, row.available) for row in view.by_platform] == [("android", 2, 1)]
    assert get_organization.sync(organization_id, client=client).plan.max_live_sessions == 50


def test_the_python_client_attaches_an_artifact_and_downloads_a_range_of_it(live_api, client_package):
    """Declared with the generated client, its bytes sent with httpx where `upload` says,
    completed and read back with the generated client, a range of it too."""
    import hashlib

    import httpx

    artifacts = importlib.import_module(f"{client_package.__name__}.api.artifacts")
    files = importlib.import_module(f"{client_package.__name__}.api.artifact_files")
    create, complete, get = (
        importlib.import_module(f"{artifacts.__name__}.{name}")
        for name in ("create_artifact", "complete_artifact", "get_artifact")
    )
    get_file = importlib.import_module(f"{files.__name__}.get_artifact_file")
    models = importlib.import_module(f"{client_package.__name__}.models")
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    list_sessions = importlib.import_module(f"{client_package.__name__}.api.sessions.list_sessions")
    session_id = list_sessions.sync(client=client, limit=1).data[0].id
    data = b"06-01 10:00:00.000 I/TestRunner: started\n" * 200
    declared = models.CreateArtifactRequest(
        type_=models.ArtifactType.DEVICE_LOG,
        name="logcat.txt",
        content_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    created = create.sync(session_id, client=client, body=declared)
    assert isinstance(created, models.NewArtifact), created
    assert created.status == models.ArtifactStatus.PENDING
    origin = live_api["base"].removesuffix("/api/v1")
    sent = httpx.put(origin + created.upload.url, content=data, headers=created.upload.headers.additional_properties)
    assert sent.status_code == 204, sent.text
    completed = complete.sync(session_id, created.id, client=client)
    assert completed.status == models.ArtifactStatus.AVAILABLE and completed.sha256 == declared.sha256
    shown = get.sync(session_id, created.id, client=client)
    token = shown.download.url.rsplit("/", 1)[-1]
    public = client_package.Client(base_url=live_api["base"])  # the signature is the credential
    whole = get_file.sync_detailed(token, client=public)
    assert whole.status_code == 200 and whole.content == data
    part = get_file.sync_detailed(token, client=public, range_="bytes=0-9")
    assert part.status_code == 206 and part.content == data[:10]


def test_the_python_client_queues_a_start_long_polls_and_cancels_it(live_api, client_package):
    """Last in this module: it adds a session to Alice's organization. Of the four devices, one
    is free: a start with `queue` takes it (201); the next waits (202) until cancelled."""
    create_session = importlib.import_module(f"{client_package.__name__}.api.sessions.create_session")
    release_session = importlib.import_module(f"{client_package.__name__}.api.sessions.release_session")
    requests = importlib.import_module(f"{client_package.__name__}.api.session_requests")
    get_request = importlib.import_module(f"{requests.__name__}.get_session_request")
    cancel_request = importlib.import_module(f"{requests.__name__}.cancel_session_request")
    list_requests = importlib.import_module(f"{requests.__name__}.list_session_requests")
    models = importlib.import_module(f"{client_package.__name__}.models")
    client = client_package.AuthenticatedClient(base_url=live_api["base"], token=live_api["secret"])
    body = models.CreateSessionRequest(
        platform=models.Platform.ANDROID, queue=models.QueueOptions(max_wait_seconds=600)
    )
    started = create_session.sync(client=client, body=body)
    assert isinstance(started, models.Session), started
    queued = create_session.sync(client=client, body=body)
    assert isinstance(queued, models.SessionRequest), queued
    assert (queued.status, queued.reason, queued.position) == (models.SessionRequestStatus.QUEUED, "device", 1)
    polled = get_request.sync(queued.id, client=client, prefer="wait=1")
    assert polled.status == models.SessionRequestStatus.QUEUED and polled.session is None
    cancelled = cancel_request.sync(queued.id, client=client)
    assert cancelled.status == models.SessionRequestStatus.CANCELLED and cancelled.position is None
    listed = list_requests.sync(client=client, status=models.SessionRequestStatus.CANCELLED)
    assert [request.id for request in listed.data] == [queued.id]
    release_session.sync(started.id, client=client)
