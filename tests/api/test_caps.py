"""Caps on what one caller can create without end: organizations a user creates, API keys a
user holds, webhook endpoints an organization has. Each answers 409 `limit_reached` past its
setting, counts what is still there, and leaves other users and organizations alone."""

from __future__ import annotations

import pytest

from sessions_api.core.settings import Settings
from sessions_api.models import Role
from tests.support.api import API_KEYS, ORGANIZATIONS, UNREACHABLE_HOOK, WEBHOOK_ENDPOINTS, assert_error, revoke_path


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(max_organizations_per_user=2, max_api_keys_per_user=3, max_webhook_endpoints=2)


def test_a_user_creates_at_most_the_capped_number_of_organizations(client, world):
    alice, bob = world.member(), world.member()
    for name in ("One", "Two"):
        assert client.post(ORGANIZATIONS, json={"name": name}, headers=alice.headers).status_code == 201
    refused = assert_error(
        client.post(ORGANIZATIONS, json={"name": "Three"}, headers=alice.headers), 409, "limit_reached"
    )
    assert "SESSIONS_API_MAX_ORGANIZATIONS_PER_USER" in refused["error"]["message"]
    # Another user has a cap of their own; the operator's organizations count for nobody.
    assert client.post(ORGANIZATIONS, json={"name": "Bob's"}, headers=bob.headers).status_code == 201
    world.organization("By the operator")
    assert len(client.get(ORGANIZATIONS, headers=alice.headers).json()["data"]) == 3  # Personal + 2


def test_a_user_holds_at_most_the_capped_number_of_live_keys(client, world):
    alice = world.member()  # holds one key already
    made = [client.post(API_KEYS, json={"name": f"k{n}"}, headers=alice.headers).json() for n in range(2)]
    assert all("secret" in key for key in made)
    assert_error(client.post(API_KEYS, json={"name": "too many"}, headers=alice.headers), 409, "limit_reached")
    # A revoked key no longer counts.
    assert client.post(revoke_path(made[0]["id"]), headers=alice.headers).status_code == 200
    assert client.post(API_KEYS, json={"name": "again"}, headers=alice.headers).status_code == 201


def test_an_organization_has_at_most_the_capped_number_of_webhook_endpoints(client, world):
    team, other = world.organization("Team"), world.organization("Other")
    admin = world.member(of=[(team, Role.admin), (other, Role.admin)])
    body = {"url": UNREACHABLE_HOOK, "events": ["session.started"]}
    created = [client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id)) for _ in range(2)]
    assert [response.status_code for response in created] == [201, 201]
    assert_error(client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id)), 409, "limit_reached")
    assert client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(other.id)).status_code == 201
    # Deleting one makes room.
    gone = client.delete(f"{WEBHOOK_ENDPOINTS}/{created[0].json()['id']}", headers=admin.acting_on(team.id))
    assert gone.status_code == 204
    assert client.post(WEBHOOK_ENDPOINTS, json=body, headers=admin.acting_on(team.id)).status_code == 201
