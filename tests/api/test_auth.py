"""API keys: who gets in, who gets 401, and what is stored."""

from __future__ import annotations

import time

from sqlalchemy import select
from starlette.testclient import TestClient

from sessions_api.core import db
from sessions_api.models import api_keys
from sessions_api.models.tables import ApiKey
from sessions_api.web.app import create_app
from tests.support.api import SESSIONS, assert_error


def _assert_unauthenticated(response):
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_valid_key_is_accepted(client, world):
    member = world.member()
    assert client.get(SESSIONS, headers=member.headers).status_code == 200


def test_missing_malformed_and_unknown_keys_get_401(client, world):
    member = world.member()
    lookup, secret = member.secret.removeprefix("sapi_").split("_", 1)
    wrong_secret = f"sapi_{lookup}_{'A' * len(secret)}"
    unknown_lookup = f"sapi_{'0' * 16}_{secret}"
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {member.secret}"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {member.secret}x"},
        {"Authorization": f"Bearer {wrong_secret}"},
        {"Authorization": f"Bearer {unknown_lookup}"},
    ):
        _assert_unauthenticated(client.get(SESSIONS, headers=headers))
        _assert_unauthenticated(client.get(f"{SESSIONS}/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10", headers=headers))


def test_all_401s_look_the_same(client, world):
    member = world.member()
    lookup, secret = member.secret.removeprefix("sapi_").split("_", 1)
    bodies = {
        client.get(SESSIONS).text,
        client.get(SESSIONS, headers={"Authorization": "Bearer nope"}).text,
        client.get(SESSIONS, headers={"Authorization": f"Bearer sapi_{lookup}_{'B' * len(secret)}"}).text,
    }
    assert len(bodies) == 1


def test_a_revoked_key_fails_on_the_next_request(client, world):
    member = world.member()
    assert client.get(SESSIONS, headers=member.headers).status_code == 200
    with db.reading() as conn:
        key_id = conn.execute(select(ApiKey.id).where(ApiKey.user_id == member.user.id)).scalar_one()
    api_keys.revoke_key(key_id)
    _assert_unauthenticated(client.get(SESSIONS, headers=member.headers))


def test_the_secret_is_not_stored(world):
    member = world.member()
    _, secret = member.secret.removeprefix("sapi_").split("_", 1)
    with db.reading() as conn:
        row = conn.execute(select(ApiKey).where(ApiKey.user_id == member.user.id)).one()
    assert secret not in " ".join(str(value) for value in row)
    assert len(row.secret_hash) == 64


def test_secrets_have_a_prefix_and_at_least_128_random_bits(world):
    secrets_made = {world.member().secret for _ in range(5)}
    assert len(secrets_made) == 5
    for secret in secrets_made:
        assert secret.startswith("sapi_")
        random_part = secret.removeprefix("sapi_").split("_", 1)[1]
        assert len(random_part) * 6 >= 128  # URL-safe base64: 6 bits a character


def _last_used(member):
    with db.reading() as conn:
        return conn.execute(select(ApiKey.last_used_at).where(ApiKey.user_id == member.user.id)).scalar_one()


def _last_used_after_the_request(member, previous=None):
    """The key's lastUsedAt once its write, which a request starts but does not wait for, is in."""
    deadline = time.monotonic() + 5
    while (used := _last_used(member)) == previous and time.monotonic() < deadline:
        time.sleep(0.02)
    return used


def test_last_use_is_recorded(client, world):
    member = world.member()
    assert _last_used(member) is None
    assert client.get(SESSIONS, headers=member.headers).status_code == 200
    assert _last_used_after_the_request(member) is not None


def test_last_use_is_written_at_most_once_per_interval(settings, world):
    member = world.member()
    with TestClient(create_app(settings.replace(key_last_used_interval=60))) as client:
        client.get(SESSIONS, headers=member.headers)
        first = _last_used_after_the_request(member)
        client.get(SESSIONS, headers=member.headers)
        time.sleep(0.2)  # time for a write that should not happen
        assert _last_used(member) == first
    with TestClient(create_app(settings.replace(key_last_used_interval=0))) as client:
        client.get(SESSIONS, headers=member.headers)
        assert _last_used_after_the_request(member, previous=first) > first
