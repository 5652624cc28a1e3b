"""Plans: the most live sessions each organization may hold (the operator's, or its kind's
default), shown to admins, and the live concurrency view that never contradicts a refusal."""

from __future__ import annotations

import pytest

from sessions_api.core import settings as current_settings
from sessions_api.models import Role, devices, plans
from tests.support.api import AUDIT_EVENTS, ORGANIZATIONS, SESSIONS, assert_error, organization_path


@pytest.fixture
def fleet(world):
    ios = [world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2") for n in range(3)]
    android = [world.device(platform="android", type="emulator", name="Pixel 9", os_version="15")]
    return {"ios": ios, "android": android}


def _start(client, member, organization_id, platform="ios"):
    return client.post(SESSIONS, json={"platform": platform}, headers=member.acting_on(organization_id))


def _concurrency(client, member, organization_id):
    response = client.get(f"{organization_path(organization_id)}/concurrency", headers=member.headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_organizations_own_plan_bounds_its_live_sessions(client, admin, team, fleet):
    assert plans.set_plan(team.id, 1).max_live_sessions == 1  # what `sessions-api org plan` calls
    first = _start(client, admin, team.id)
    assert first.status_code == 201
    refused = assert_error(_start(client, admin, team.id), 409, "concurrency_limit_reached")
    assert "holds 1 live sessions" in refused["error"]["message"] and "(1)" in refused["error"]["message"]
    client.post(f"{SESSIONS}/{first.json()['id']}/release", headers=admin.acting_on(team.id))
    assert _start(client, admin, team.id).status_code == 201


def test_organizations_made_through_the_api_get_the_self_service_plan(client, admin, fleet):
    made = client.post(ORGANIZATIONS, json={"name": "Side project"}, headers=admin.headers).json()
    config = current_settings.current()
    limit = config.self_service_max_live_sessions
    assert made["plan"] == {
        "maxLiveSessions": limit,
        "maxQueuedSessions": config.self_service_max_queued_sessions,
        "maxStorageBytes": config.self_service_max_storage_bytes,
        "storedBytes": 0,
        "artifactRetentionDays": config.artifact_retention_days,
    }
    for _ in range(limit):
        assert _start(client, admin, made["id"]).status_code == 201
    assert_error(_start(client, admin, made["id"]), 409, "concurrency_limit_reached")


def test_the_plan_is_shown_to_every_member_alike(client, admin, world, team):
    """getOrganization and getConcurrency agree: every member, whatever the role, sees the plan."""
    config = current_settings.current()
    limits = {"maxLiveSessions": config.max_live_sessions, "maxQueuedSessions": config.max_queued_sessions}
    default = {
        **limits,
        "maxStorageBytes": config.max_storage_bytes,
        "storedBytes": 0,
        "artifactRetentionDays": config.artifact_retention_days,
    }
    for role in (Role.readwrite, Role.readonly):
        member = world.member(of=[(team, role)])
        assert client.get(organization_path(team.id), headers=member.headers).json()["plan"] == default
        concurrency = client.get(f"{organization_path(team.id)}/concurrency", headers=member.headers).json()
        assert {name: concurrency[name] for name in limits} == limits
        listed = client.get(ORGANIZATIONS, headers=member.headers).json()["data"]
        assert all("plan" in organization for organization in listed)
    assert client.get(organization_path(team.id), headers=admin.headers).json()["plan"] == default


def test_a_plan_change_is_audited_and_default_goes_back_to_the_kinds(client, admin, team):
    config = current_settings.current()
    default, queued = config.max_live_sessions, config.max_queued_sessions
    kept = {"maxStorageBytes": config.max_storage_bytes, "artifactRetentionDays": config.artifact_retention_days}
    plans.set_plan(team.id, 7)
    assert plans.set_plan(team.id, None).max_live_sessions == default
    changed = plans.set_plan(team.id, max_queued=0)
    assert (changed.max_live_sessions, changed.max_queued_sessions) == (default, 0)  # the other limit stays
    events = client.get(
        AUDIT_EVENTS, params={"type": "organization.plan_changed"}, headers=admin.acting_on(team.id)
    ).json()["data"]
    storage = plans.set_plan(team.id, max_storage_bytes=10**9, artifact_retention_days=0.5)
    assert (storage.max_storage_bytes, storage.artifact_retention_days) == (10**9, 0.5)
    assert [event["data"] for event in events] == [
        {
            "before": {"maxLiveSessions": default, "maxQueuedSessions": queued, **kept},
            "after": {"maxLiveSessions": default, "maxQueuedSessions": 0, **kept},
        },
        {
            "before": {"maxLiveSessions": 7, "maxQueuedSessions": queued, **kept},
            "after": {"maxLiveSessions": default, "maxQueuedSessions": queued, **kept},
        },
        {
            "before": {"maxLiveSessions": default, "maxQueuedSessions": queued, **kept},
            "after": {"maxLiveSessions": 7, "maxQueuedSessions": queued, **kept},
        },
    ]
    assert {(event["origin"], event["actor"]["user"], event["actor"]["key"]) for event in events} == {
        ("cli", None, None)
    }


def test_the_live_view_counts_what_the_allocator_counts(client, admin, world, team, fleet):
    other_team = world.organization("Other")
    other = world.member(of=[(other_team, Role.admin)])
    plans.set_plan(team.id, 3)
    devices.set_disabled(fleet["ios"][2].id, True)  # offline: never available
    assert _concurrency(client, admin, team.id) == {
        "live": 0,
        "queued": 0,
        "maxLiveSessions": 3,
        "maxQueuedSessions": current_settings.current().max_queued_sessions,
        "byPlatform": [
            {"platform": "android", "live": 0, "queued": 0, "available": 1},
            {"platform": "ios", "live": 0, "queued": 0, "available": 2},
        ],
    }
    assert _start(client, admin, team.id).status_code == 201
    assert _start(client, other, other_team.id).status_code == 201  # another organization takes the last iPhone
    view = _concurrency(client, admin, team.id)
    assert (view["live"], view["byPlatform"][1]) == (1, {"platform": "ios", "live": 1, "queued": 0, "available": 0})
    assert_error(_start(client, admin, team.id), 409, "no_device_available")  # as the view says
    assert _start(client, admin, team.id, "android").status_code == 201
    plans.set_plan(team.id, 2)
    view = _concurrency(client, admin, team.id)
    assert (view["live"], view["maxLiveSessions"]) == (2, 2)
    assert_error(_start(client, admin, team.id, "android"), 409, "concurrency_limit_reached")


def test_another_organizations_view_is_not_found(client, admin, world):
    other = world.organization("Other")
    response = client.get(f"{organization_path(other.id)}/concurrency", headers=admin.headers)
    assert_error(response, 404, "not_found")
