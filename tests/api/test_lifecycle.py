"""Sessions as leases: start, release, expire; devices, roles, idempotency, filters."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from sessions_api.core import db
from sessions_api.core.timestamps import format_utc, parse_rfc3339, utcnow
from sessions_api.models import Role, devices, session_import
from sessions_api.models.tables import SessionRecord
from sessions_api.web.app import create_app
from tests.support.api import DEVICES, ORGANIZATIONS, SESSIONS, assert_error, list_all


@pytest.fixture
def team(world):
    return world.organization("Team")


@pytest.fixture
def members(world, team):
    """One member of the team per role, each with an unbound key."""
    return {role: world.member(of=[(team, role)]) for role in Role}


def _start(client, member, organization, body=None, **headers):
    return client.post(
        SESSIONS, json=body or {"platform": "ios"}, headers={**member.acting_on(organization.id), **headers}
    )


def _ios(world, count=1, **spec):
    return [
        world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2", **spec)
        for n in range(count)
    ]


def _state(client, member, device) -> str:
    listed = client.get(DEVICES, params={"limit": 500}, headers=member.headers).json()["data"]
    return next(item["state"] for item in listed if item["id"] == str(device.id))


# --- roles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.admin, Role.readwrite])
def test_admins_and_readwrite_members_start_and_release(client, world, team, members, role):
    (device,) = _ios(world)
    started = _start(client, members[role], team)
    assert started.status_code == 201, started.text
    session = started.json()
    assert started.headers["Location"] == f"{SESSIONS}/{session['id']}"
    assert session["organization"] == str(team.id) and session["user"] == str(members[role].user.id)
    assert session["device"]["id"] == str(device.id) and session["releasedAt"] is None
    assert _state(client, members[role], device) == "in_use"
    released = client.post(f"{SESSIONS}/{session['id']}/release", headers=members[role].acting_on(team.id))
    assert released.status_code == 200
    assert released.json()["releasedAt"] is not None
    assert _state(client, members[role], device) == "available"


def test_readonly_members_may_read_but_not_start_or_release(client, world, team, members):
    _ios(world)
    session = _start(client, members[Role.admin], team).json()
    readonly = members[Role.readonly]
    body = assert_error(_start(client, readonly, team), 403, "forbidden")
    assert "readonly" in body["error"]["message"]
    assert_error(
        client.post(f"{SESSIONS}/{session['id']}/release", headers=readonly.acting_on(team.id)), 403, "forbidden"
    )
    for path in (SESSIONS, f"{SESSIONS}/{session['id']}", DEVICES, ORGANIZATIONS):
        assert client.get(path, headers=readonly.acting_on(team.id)).status_code == 200, path


def test_every_role_may_write_in_its_own_personal_organization(client, world):
    _ios(world)
    member = world.member()  # admin of their Personal organization
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=member.headers).status_code == 201


# --- starting --------------------------------------------------------------------------------


def test_no_device_of_that_description_is_422_and_all_busy_is_409(client, world, team, members):
    _ios(world)
    admin = members[Role.admin]
    assert_error(_start(client, admin, team, {"platform": "android"}), 422, "no_matching_device")
    assert_error(_start(client, admin, team, {"platform": "ios", "osVersion": "9.0"}), 422, "no_matching_device")
    assert _start(client, admin, team, {"platform": "ios", "osVersion": "18.2", "type": "simulator"}).status_code == 201
    assert_error(_start(client, admin, team), 409, "no_device_available")


def test_offline_devices_are_never_leased_and_a_running_session_finishes(client, world, team, members):
    (device,) = _ios(world)
    admin = members[Role.admin]
    session = _start(client, admin, team).json()
    devices.set_disabled(device.id, True)
    assert _state(client, admin, device) == "offline"
    got = client.get(f"{SESSIONS}/{session['id']}", headers=admin.acting_on(team.id)).json()
    assert got["releasedAt"] is None  # disabling does not end the session
    client.post(f"{SESSIONS}/{session['id']}/release", headers=admin.acting_on(team.id))
    assert_error(_start(client, admin, team), 409, "no_device_available")
    devices.set_disabled(device.id, False)
    assert _start(client, admin, team).status_code == 201


def test_the_live_session_limit_is_409(client, settings, world, team, members):
    _ios(world, 3)
    app = create_app(settings.replace(max_live_sessions=2))
    with TestClient(app, raise_server_exceptions=False) as limited:
        admin = members[Role.admin]
        first = _start(limited, admin, team).json()
        assert _start(limited, admin, team).status_code == 201
        assert_error(_start(limited, admin, team), 409, "concurrency_limit_reached")
        limited.post(f"{SESSIONS}/{first['id']}/release", headers=admin.acting_on(team.id))
        assert _start(limited, admin, team).status_code == 201


def test_expiry_follows_max_duration_capped_by_the_server(client, world, team, members):
    _ios(world, 3)
    admin = members[Role.admin]
    for asked, expected in ((None, 60), (5, 5), (1440, 240)):
        body = {"platform": "ios"} if asked is None else {"platform": "ios", "maxDurationMinutes": asked}
        session = _start(client, admin, team, body).json()
        duration = parse_rfc3339(session["expiresAt"]) - parse_rfc3339(session["createdAt"])
        assert duration == timedelta(minutes=expected)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"platform": "windows"},
        {"platform": "ios", "colour": "red"},
        {"platform": "ios", "maxDurationMinutes": 0},
        {"platform": "ios", "maxDurationMinutes": 1441},
        {"platform": "ios", "osVersion": ""},
        ["ios"],
    ],
)
def test_bad_bodies_get_400(client, team, members, body):
    assert_error(
        client.post(SESSIONS, json=body, headers=members[Role.admin].acting_on(team.id)), 400, "invalid_request"
    )


def test_a_body_that_is_not_json_gets_400_or_415(client, team, members):
    headers = members[Role.admin].acting_on(team.id)
    assert_error(
        client.post(SESSIONS, content=b"{", headers={**headers, "Content-Type": "application/json"}),
        400,
        "invalid_request",
    )
    assert_error(
        client.post(SESSIONS, content=b"\xff", headers={**headers, "Content-Type": "application/json"}),
        400,
        "invalid_request",
    )
    assert_error(
        client.post(SESSIONS, content=b"platform=ios", headers={**headers, "Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


# --- idempotency -----------------------------------------------------------------------------


def test_the_same_idempotency_key_replays_the_first_answer(client, world, team, members):
    _ios(world, 2)
    admin = members[Role.admin]
    first = _start(client, admin, team, {"platform": "ios", "maxDurationMinutes": 30}, **{"Idempotency-Key": "k-1"})
    again = _start(client, admin, team, {"maxDurationMinutes": 30, "platform": "ios"}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    live = client.get(SESSIONS, params={"status": "live"}, headers=admin.acting_on(team.id)).json()["data"]
    assert len(live) == 1


def test_one_idempotency_key_sent_at_once_by_several_clients_starts_one_session(client, world, team, members):
    _ios(world, 8)
    admin = members[Role.admin]
    barrier, answers = threading.Barrier(6), []

    def start() -> None:
        barrier.wait(timeout=10)
        answers.append(_start(client, admin, team, {"platform": "ios"}, **{"Idempotency-Key": "k-at-once"}))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [answer.status_code for answer in answers] == [201] * 6
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum("Idempotent-Replayed" not in answer.headers for answer in answers) == 1
    live = client.get(SESSIONS, params={"status": "live"}, headers=admin.acting_on(team.id)).json()["data"]
    assert len(live) == 1


def test_an_idempotency_key_with_another_body_is_422(client, world, team, members):
    _ios(world, 2)
    admin = members[Role.admin]
    assert _start(client, admin, team, {"platform": "ios"}, **{"Idempotency-Key": "k-2"}).status_code == 201
    reused = _start(client, admin, team, {"platform": "ios", "type": "simulator"}, **{"Idempotency-Key": "k-2"})
    assert_error(reused, 422, "idempotency_key_reused")


def test_idempotency_keys_belong_to_one_organization_and_failures_are_not_kept(client, world, team, members):
    _ios(world)
    admin = members[Role.admin]
    assert _start(client, admin, team, **{"Idempotency-Key": "k-3"}).status_code == 201
    # Another organization's key of the same name is its own: here it finds the device busy...
    other = admin.headers | {"Idempotency-Key": "k-3"}
    assert_error(client.post(SESSIONS, json={"platform": "ios"}, headers=other), 409, "no_device_available")
    # ...and that failure is not replayed once a device is free.
    world.device(platform="ios", type="simulator", name="iPhone spare", os_version="18.2")
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=other).status_code == 201


# --- release and expiry ----------------------------------------------------------------------


def test_releasing_again_keeps_the_original_time(client, world, team, members):
    _ios(world)
    admin = members[Role.admin]
    session = _start(client, admin, team).json()
    first = client.post(f"{SESSIONS}/{session['id']}/release", headers=admin.acting_on(team.id)).json()
    time.sleep(0.01)
    second = client.post(f"{SESSIONS}/{session['id']}/release", headers=admin.acting_on(team.id))
    assert second.status_code == 200 and second.json() == first


def test_another_organizations_session_cannot_be_released(client, world, team, members):
    _ios(world)
    session = _start(client, members[Role.admin], team).json()
    outsider = world.member()
    foreign = client.post(f"{SESSIONS}/{session['id']}/release", headers=outsider.headers)
    missing = client.post(f"{SESSIONS}/{uuid.uuid4()}/release", headers=outsider.headers)
    assert_error(foreign, 404, "not_found")
    assert foreign.content == missing.content
    got = client.get(f"{SESSIONS}/{session['id']}", headers=members[Role.admin].acting_on(team.id)).json()
    assert got["releasedAt"] is None


def test_expired_sessions_are_released_without_any_api_call(settings, world, team, members):
    (device,) = _ios(world)
    admin = members[Role.admin]
    created = utcnow()
    expires = created + timedelta(seconds=1)
    session_import.import_sessions(
        [
            f'{{"organization": "{team.id}", "user": "{admin.user.id}", "device": "{device.id}", '
            f'"createdAt": "{format_utc(created)}", "expiresAt": "{format_utc(expires)}"}}'
        ]
    )
    with TestClient(create_app(settings.replace(expiry_sweep_seconds=0.2))):
        deadline = time.monotonic() + 10
        released_at = None
        while released_at is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with db.reading() as conn:
                released_at = conn.execute(select(SessionRecord.released_at)).scalar_one()
    assert released_at == expires


def test_an_expired_lease_does_not_hold_its_device(client, world, team, members):
    (device,) = _ios(world)
    admin = members[Role.admin]
    past = utcnow() - timedelta(hours=2)
    session_import.import_sessions(
        [
            f'{{"organization": "{team.id}", "user": "{admin.user.id}", "device": "{device.id}", '
            f'"createdAt": "{format_utc(past)}"}}'
        ]
    )  # expired an hour ago, not yet swept
    started = _start(client, admin, team)
    assert started.status_code == 201 and started.json()["device"]["id"] == str(device.id)
    old = [s for s in list_all(client, admin.acting_on(team.id)) if s["id"] != started.json()["id"]]
    assert old[0]["releasedAt"] == format_utc(past + timedelta(minutes=60))


# --- filters ---------------------------------------------------------------------------------


def test_filters_combine_with_paging(client, world, team, members):
    admin, writer = members[Role.admin], members[Role.readwrite]
    android = world.device()
    iphone = world.device(platform="ios", type="physical", name="iPhone 15", os_version="17.6")
    t0 = datetime(2026, 4, 1, tzinfo=UTC)
    lines = []
    for n in range(120):
        member, device = (admin, android) if n % 3 else (writer, iphone)
        created = t0 + timedelta(minutes=n)
        lines.append(
            f'{{"organization": "{team.id}", "user": "{member.user.id}", "device": "{device.id}", '
            f'"createdAt": "{format_utc(created)}", "releasedAt": "{format_utc(created + timedelta(seconds=30))}"}}'
        )
    session_import.import_sessions(lines)
    headers = admin.acting_on(team.id)
    by_writer = list_all(client, headers, limit=7, user=str(writer.user.id))
    assert len(by_writer) == 40 and {s["user"] for s in by_writer} == {str(writer.user.id)}
    on_android = list_all(client, headers, limit=9, platform="android", status="released")
    assert len(on_android) == 80 and {s["device"]["id"] for s in on_android} == {str(android.id)}
    assert list_all(client, headers, limit=5, device=str(iphone.id), user=str(admin.user.id)) == []
    assert list_all(client, headers, status="live") == []
    assert_error(client.get(SESSIONS, params={"device": "not-a-device-id"}, headers=headers), 400, "invalid_request")


def test_devices_list_with_filters_states_and_paging(client, world, members):
    admin = members[Role.admin]
    ios = _ios(world, 5)
    world.device(platform="android", type="emulator", name="Pixel 8", os_version="14")
    devices.set_disabled(ios[0].id, True)
    assert client.post(SESSIONS, json={"platform": "ios"}, headers=admin.headers).status_code == 201
    seen, query = [], {"limit": 2, "platform": "ios"}
    while True:
        page = client.get(DEVICES, params=query, headers=admin.headers).json()
        seen += page["data"]
        if "nextCursor" not in page:
            break
        query["before"] = page["nextCursor"]
    assert len(seen) == 5 and len({d["id"] for d in seen}) == 5
    assert sorted(d["state"] for d in seen) == ["available"] * 3 + ["in_use", "offline"]
    available = client.get(DEVICES, params={"state": "available", "osVersion": "18.2"}, headers=admin.headers)
    assert len(available.json()["data"]) == 3


def test_organizations_list_the_callers_roles(client, world, team, members):
    writer = members[Role.readwrite]
    body = client.get(ORGANIZATIONS, headers=writer.headers).json()
    assert [(o["id"], o["personal"], o["role"]) for o in body["data"]] == [
        (str(writer.personal.id), True, "admin"),
        (str(team.id), False, "readwrite"),
    ]
    bound = world.member(of=[(team, Role.readonly)], bound_to=team)
    assert [o["id"] for o in client.get(ORGANIZATIONS, headers=bound.headers).json()["data"]] == [str(team.id)]
