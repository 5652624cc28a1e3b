"""Rate limits: each key's budget, each organization's session starts, failed authentications
per address; the IETF RateLimit headers on the way down, 429 `rate_limited` past the end."""

from __future__ import annotations

import logging
import re
import time

import pytest
from starlette.testclient import TestClient

from sessions_api.core.metrics import RATE_LIMIT_STORAGE_ERRORS
from sessions_api.models import Role, api_keys
from sessions_api.web.app import create_app
from tests.support.api import DEVICES, ORGANIZATIONS, SESSIONS, assert_error

_ITEM = re.compile(r'"(?P<name>[^"]+)";(?P<params>[^,]+)')


def parse_list(header: str) -> dict[str, dict[str, int]]:
    """A structured-field list of policies: name -> {parameter: integer}."""
    return {
        match["name"]: {key: int(value) for key, value in (param.split("=") for param in match["params"].split(";"))}
        for match in _ITEM.finditer(header)
    }


@pytest.fixture
def limited(settings, world):
    """A client of an app of its own with small budgets: keys 5 a minute, starts 2 a minute, 3
    failures (`world` builds data in the test's database, which this app serves too)."""
    app = create_app(
        settings.replace(rate_limit="5/minute", start_rate_limit="2/minute", auth_failure_limit="3/minute")
    )
    _start_well_inside_a_window(60)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _start_well_inside_a_window(seconds: int, margin: float = 5.0) -> None:
    """Wait out the last `margin` seconds of the current window: the sliding window counter
    weighs the previous window's hits by the time left of it and rounds down, so right after a
    window turns, a budget spent just before it lets one more request through."""
    left = seconds - time.time() % seconds
    if left < margin:
        time.sleep(left + 0.05)


def test_exactly_the_budget_passes_and_the_headers_count_down(limited, world):
    alice = world.member()
    for left in (4, 3, 2, 1, 0):
        response = limited.get(SESSIONS, headers=alice.headers)
        assert response.status_code == 200
        assert parse_list(response.headers["RateLimit-Policy"]) == {"key-60s": {"q": 5, "w": 60}}
        state = parse_list(response.headers["RateLimit"])["key-60s"]
        assert state["r"] == left and 0 <= state["t"] <= 60
    refused = limited.get(SESSIONS, headers=alice.headers)
    body = assert_error(refused, 429, "rate_limited")
    assert "5 per 1 minute" in body["error"]["message"] and "this API key" in body["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert parse_list(refused.headers["RateLimit"])["key-60s"]["r"] == 0


def test_every_operation_and_every_answer_spends_the_same_budget(limited, world):
    alice = world.member()
    answers = [
        limited.get(DEVICES, headers=alice.headers),
        limited.get(ORGANIZATIONS, headers=alice.headers),
        limited.get(f"{SESSIONS}/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10", headers=alice.headers),  # 404
        limited.get(SESSIONS, params={"limit": 0}, headers=alice.headers),  # 400
        limited.get(SESSIONS, headers=alice.acting_on("not-mine")),  # 403: the key is live all the same
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 400, 403]
    assert [parse_list(answer.headers["RateLimit"])["key-60s"]["r"] for answer in answers] == [4, 3, 2, 1, 0]
    assert_error(limited.get(DEVICES, headers=alice.headers), 429, "rate_limited")


def test_two_keys_do_not_share_a_budget(limited, world):
    alice, bob = world.member(), world.member()
    for _ in range(5):
        assert limited.get(SESSIONS, headers=alice.headers).status_code == 200
    assert_error(limited.get(SESSIONS, headers=alice.headers), 429, "rate_limited")
    assert limited.get(SESSIONS, headers=bob.headers).status_code == 200
    # A second key of the same user has a budget of its own too.
    _, second = api_keys.create_key(alice.user.id)
    assert limited.get(SESSIONS, headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_several_windows_each_hold(settings, world):
    alice = world.member()
    app = create_app(settings.replace(rate_limit="2/second;3/minute"))
    with TestClient(app) as client:
        _start_well_inside_a_window(1, margin=0.7)  # the three requests fit in one second's window
        first = client.get(SESSIONS, headers=alice.headers)
        # The headers name the policy nearest to running out: 1 of 2 left beats 2 of 3.
        assert parse_list(first.headers["RateLimit-Policy"]) == {"key-1s": {"q": 2, "w": 1}}
        assert client.get(SESSIONS, headers=alice.headers).status_code == 200
        refused = client.get(SESSIONS, headers=alice.headers)
        assert_error(refused, 429, "rate_limited")
        assert "2 per 1 second" in refused.json()["error"]["message"]


def test_a_users_keys_share_the_users_budget(settings, world):
    alice, bob = world.member(), world.member()
    _, second = api_keys.create_key(alice.user.id)
    app = create_app(settings.replace(rate_limit="100/minute", rate_limit_per_user="3/minute"))
    _start_well_inside_a_window(60)
    with TestClient(app, raise_server_exceptions=False) as client:
        keys = [alice.headers, {"Authorization": f"Bearer {second}"}, alice.headers]
        answers = [client.get(SESSIONS, headers=headers) for headers in keys]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        state = parse_list(answers[-1].headers["RateLimit"])
        assert set(state) == {"user-60s"} and state["user-60s"]["r"] == 0  # the nearest to its end
        refused = client.get(SESSIONS, headers={"Authorization": f"Bearer {second}"})
        assert "all your API keys" in assert_error(refused, 429, "rate_limited")["error"]["message"]
        assert client.get(SESSIONS, headers=bob.headers).status_code == 200  # another user's is their own


def test_an_organizations_members_share_its_budget(settings, world):
    team, elsewhere = world.organization("Team"), world.organization("Elsewhere")
    members = [world.member(of=[(team, Role.readonly), (elsewhere, Role.readonly)]) for _ in range(3)]
    app = create_app(settings.replace(rate_limit="100/minute", rate_limit_per_organization="3/minute"))
    _start_well_inside_a_window(60)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert all(client.get(SESSIONS, headers=m.acting_on(team.id)).status_code == 200 for m in members)
        refused = client.get(SESSIONS, headers=members[0].acting_on(team.id))
        assert "this organization" in assert_error(refused, 429, "rate_limited")["error"]["message"]
        assert "organization-60s" in parse_list(refused.headers["RateLimit"])
        # The same members acting on another organization spend that one's budget.
        assert client.get(SESSIONS, headers=members[0].acting_on(elsewhere.id)).status_code == 200


def test_session_starts_have_a_smaller_budget_per_organization(limited, world):
    team = world.organization()
    writer, other_writer = (world.member(of=[(team, Role.readwrite)]) for _ in range(2))
    for name in ("A", "B", "C"):
        world.device(platform="ios", type="simulator", name=name, os_version="18")
    starts = [
        limited.post(SESSIONS, json={"platform": "ios"}, headers=writer.acting_on(team.id)),
        limited.post(SESSIONS, json={"platform": "ios"}, headers=other_writer.acting_on(team.id)),
    ]
    assert [start.status_code for start in starts] == [201, 201]
    assert parse_list(starts[1].headers["RateLimit"])["start-60s"]["r"] == 0
    assert set(parse_list(starts[1].headers["RateLimit-Policy"])) == {"start-60s"}  # the nearest to its end
    refused = limited.post(SESSIONS, json={"platform": "ios"}, headers=other_writer.acting_on(team.id))
    body = assert_error(refused, 429, "rate_limited")
    assert "session starts of this organization" in body["error"]["message"]
    # Other operations of the organization, and starts in another organization, go on.
    assert limited.get(SESSIONS, headers=writer.acting_on(team.id)).status_code == 200
    assert "start-60s" not in limited.get(SESSIONS, headers=writer.acting_on(team.id)).headers["RateLimit-Policy"]
    assert limited.post(SESSIONS, json={"platform": "ios"}, headers=writer.headers).status_code == 201


def test_failed_authentications_are_limited_per_address_and_never_lock_out_a_valid_key(limited, world, monkeypatch):
    alice = world.member()
    for left in (2, 1, 0):
        failed = limited.get(SESSIONS, headers={"Authorization": "Bearer sapi_0000000000000000_" + "A" * 43})
        assert_error(failed, 401, "unauthenticated")
        assert parse_list(failed.headers["RateLimit"])["auth-failures-60s"]["r"] == left
    # Past the budget, every failure answers 429: a wrong secret after its lookup, ...
    refused = limited.get(SESSIONS, headers={"Authorization": "Bearer sapi_0000000000000000_" + "B" * 43})
    body = assert_error(refused, 429, "rate_limited")
    assert "failed authentications from your address" in body["error"]["message"]
    # ... and a valid key from the same address (someone else's failures: a proxy, a NAT) is served.
    assert limited.get(SESSIONS, headers=alice.headers).status_code == 200

    def no_lookup(*_args, **_kwargs):
        raise AssertionError("a token not shaped like a key is never looked up")

    # ... and a token that is not even shaped like a key costs no lookup.
    monkeypatch.setattr(api_keys, "authenticate", no_lookup)
    assert_error(limited.get(SESSIONS, headers={"Authorization": "Bearer guess"}), 429, "rate_limited")


def test_limits_can_be_turned_off(settings, world):
    alice = world.member()
    off = {"rate_limit": "off", "rate_limit_per_user": "off", "rate_limit_per_organization": "off"}
    with TestClient(create_app(settings.replace(**off, start_rate_limit="off"))) as client:
        response = client.get(SESSIONS, headers=alice.headers)
        assert response.status_code == 200 and "RateLimit" not in response.headers


def test_an_unreachable_storage_fails_open_with_one_warning(settings, world, caplog):
    alice = world.member()
    app = create_app(settings.replace(rate_limit="1/minute", rate_limit_storage="redis://127.0.0.1:1/0"))
    errors_before = RATE_LIMIT_STORAGE_ERRORS._value.get()
    with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="sessions_api.web.rate_limits"):
        for _ in range(3):
            response = client.get(SESSIONS, headers=alice.headers)
            assert response.status_code == 200 and "RateLimit" not in response.headers
    warnings = [record for record in caplog.records if "rate limits" in record.getMessage()]
    assert len(warnings) == 1
    assert RATE_LIMIT_STORAGE_ERRORS._value.get() > errors_before


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSIONS_API_RATE_LIMIT", "lots"),
        ("SESSIONS_API_START_RATE_LIMIT", "5/fortnight"),
        ("SESSIONS_API_RATE_LIMIT_STORAGE", "mongodb://x"),
    ],
)
def test_a_bad_limit_or_storage_is_refused_at_start(monkeypatch, variable, value):
    from sessions_api.core.settings import Settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        Settings.from_env()
