"""One request, one truth: what the handler gets is what validation checked, and what could be
read two ways is refused. The first cases are the requests that once got through (a body
validated in UTF-7 and stored from UTF-8, the first of two headers validated and the last
one used)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from sessions_api.core import db, resources
from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.web.app import create_app
from sessions_api.web.operations import SpecError
from tests.support.api import API, SESSIONS, assert_error
from tests.support.databases import migrate
from tests.support.world import World

JSON = "application/json"
# `{"platform": "android", "maxDurationMinutes": -100000, <"maxDurationMinutes" in UTF-7>: 5}`:
# valid when decoded as UTF-7, a negative duration when decoded as UTF-8.
UTF7_SESSION = (
    b'{"platform":"android","maxDurationMinutes":-100000,"+AG0AYQB4AEQAdQByAGEAdABpAG8AbgBNAGkAbgB1AHQAZQBz-":5}'
)


@pytest.fixture
def android(world):
    return [world.device(platform="android", name=f"Pixel {n}") for n in range(3)]


def _live(client, member, team) -> list:
    return client.get(SESSIONS, params={"status": "live"}, headers=member.acting_on(team.id)).json()["data"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json;charset=utf-7",
        "application/json; charset=UTF-7",
        'application/json; charset="utf-7"',
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf8",
    ],
)
def test_a_charset_other_than_utf8_is_415_and_nothing_is_stored(client, writer, team, android, content_type):
    headers = {**writer.acting_on(team.id), "Content-Type": content_type}
    assert_error(client.post(SESSIONS, content=UTF7_SESSION, headers=headers), 415, "unsupported_media_type")
    assert _live(client, writer, team) == []


@pytest.mark.parametrize(
    "content_type",
    [JSON, "application/json; charset=utf-8", "application/json;charset=UTF-8", 'application/json; charset="Utf-8"'],
)
def test_utf8_in_any_spelling_is_json(client, writer, team, android, content_type):
    headers = {**writer.acting_on(team.id), "Content-Type": content_type}
    started = client.post(SESSIONS, content=b'{"platform": "android", "maxDurationMinutes": 5}', headers=headers)
    assert started.status_code == 201, started.text


def test_the_utf7_trick_on_organizations_and_webhooks_is_415(client, admin, team):
    headers = {**admin.acting_on(team.id), "Content-Type": "application/json;charset=utf-7"}
    organization = b'{"name":[1],"+AG4AYQBtAGU-":"ok"}'
    assert_error(
        client.post(f"{API}/organizations", content=organization, headers=headers), 415, "unsupported_media_type"
    )
    endpoint = b'{"url":"https://example.com/hook","events":["session.started"],"+AGQAZQBzAGMAcgBpAHAAdABpAG8Abg-":"x"}'
    assert_error(
        client.post(f"{API}/webhook-endpoints", content=endpoint, headers=headers), 415, "unsupported_media_type"
    )
    assert client.get(f"{API}/webhook-endpoints", headers=admin.acting_on(team.id)).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'\xef\xbb\xbf{"platform": "android"}', "byte-order mark"),
        (b'{"platform": "andr\xefid"}', "UTF-8"),
        (b'{"platform": "android", "name": "\xc3\x28"}', "UTF-8"),
        ('{"platform": "android"}'.encode("utf-16"), "UTF-8"),
    ],
)
def test_a_byte_order_mark_or_bytes_that_are_not_utf8_are_400(client, writer, team, android, body, mentions):
    headers = {**writer.acting_on(team.id), "Content-Type": JSON}
    error = assert_error(client.post(SESSIONS, content=body, headers=headers), 400, "invalid_request")
    assert mentions in error["error"]["message"]
    assert _live(client, writer, team) == []


def test_a_header_sent_twice_is_400_naming_it(client, writer, team, android):
    headers = [
        *writer.acting_on(team.id).items(),
        ("Content-Type", JSON),
        ("Idempotency-Key", "ok1"),
        ("Idempotency-Key", "A" * 5000),
    ]
    error = assert_error(client.post(SESSIONS, json={"platform": "android"}, headers=headers), 400, "invalid_request")
    assert "Idempotency-Key" in error["error"]["message"]
    assert _live(client, writer, team) == []
    for name, values in [
        ("X-Organization-Id", [str(team.id), str(writer.personal.id)]),
        ("Content-Type", [JSON, JSON]),
    ]:
        twice = [*writer.headers.items(), *((name, value) for value in values)]
        error = assert_error(
            client.post(SESSIONS, content=b'{"platform": "android"}', headers=twice), 400, "invalid_request"
        )
        assert name in error["error"]["message"]
    twice = [("Authorization", writer.headers["Authorization"])] * 2
    error = assert_error(client.get(SESSIONS, headers=twice), 400, "invalid_request")
    assert "Authorization" in error["error"]["message"]


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("limit=1&limit=2", "limit"),
        ("status=live&status=released", "status"),
        ("limit=1&lim%69t=2", "limit"),  # the same name, once percent-encoded
        ("limit=%FF", "UTF-8"),
        ("limit=", "limit"),
        ("colour=red", "colour"),
        ("before=2026-11-28T09:14:03+01:00", "before"),  # `+` is a space: no offset left
    ],
)
def test_ambiguous_or_unknown_query_parameters_are_400_naming_them(client, writer, query, mentions):
    error = assert_error(client.get(f"{SESSIONS}?{query}", headers=writer.headers), 400, "invalid_request")
    assert mentions in error["error"]["message"]


def test_the_handler_gets_the_values_validation_checked(client, world, writer):
    world.sessions(writer.personal, writer.user, [parse_rfc3339(f"2026-11-2{n}T09:00:00Z") for n in range(8)])
    # Percent-encoded names and values are the same parameters, decoded once.
    page = client.get(f"{SESSIONS}?%6Cimit=%33", headers=writer.headers).json()
    assert len(page["data"]) == 3 and page["nextCursor"]
    # `%2B` is a plus sign: an offset, compared in UTC (09:00+01:00 is 08:00Z, before the 09:00Z ones).
    before = client.get(f"{SESSIONS}?before=2026-11-27T10:00:00%2B01:00", headers=writer.headers).json()["data"]
    assert [session["createdAt"] for session in before][:1] == ["2026-11-26T09:00:00.000000Z"]
    # The spec's default (100) when the parameter is absent.
    assert len(client.get(SESSIONS, headers=writer.headers).json()["data"]) == 8


def test_a_repeated_json_name_is_read_once_and_the_last_value_is_the_one_stored(client, writer, team, android):
    headers = {**writer.acting_on(team.id), "Content-Type": JSON}
    refused = client.post(
        SESSIONS, content=b'{"platform":"android","maxDurationMinutes":5,"maxDurationMinutes":-5}', headers=headers
    )
    assert_error(refused, 400, "invalid_request")
    started = client.post(
        SESSIONS, content=b'{"platform":"android","maxDurationMinutes":-5,"maxDurationMinutes":7}', headers=headers
    )
    assert started.status_code == 201, started.text
    session = started.json()
    assert parse_rfc3339(session["expiresAt"]) - parse_rfc3339(session["createdAt"]) == timedelta(minutes=7)


def test_two_apps_in_one_process_each_serve_their_own_database_and_limits(tmp_path):
    urls = []
    for name in ("first", "second"):
        urls.append(f"sqlite:///{tmp_path / name}.db")
        migrate(urls[-1])
    first = create_app(Settings(database_url=urls[0], rate_limit="2/hour"))
    second = create_app(Settings(database_url=urls[1], rate_limit="100/minute"))
    with db.bound(first.state.database), TestClient(first) as one, TestClient(second) as two:
        alice = World().member()
        with db.bound(second.state.database):
            bob = World().member()
        assert one.get(SESSIONS, headers=alice.headers).status_code == 200
        assert_error(two.get(SESSIONS, headers=alice.headers), 401, "unauthenticated")
        assert two.get(SESSIONS, headers=bob.headers).status_code == 200
        assert_error(one.get(SESSIONS, headers=bob.headers), 401, "unauthenticated")
        # The first app's budget is its own: 2 an hour, while the second's is 100 a minute.
        assert one.get(SESSIONS, headers=alice.headers).status_code == 200
        assert_error(one.get(SESSIONS, headers=alice.headers), 429, "rate_limited")
        assert all(two.get(SESSIONS, headers=bob.headers).status_code == 200 for _ in range(5))


def test_an_operation_without_required_roles_stops_the_app_at_start(tmp_path, monkeypatch):
    spec = resources.spec_path().read_text()
    changed = spec.replace("      x-required-roles: [admin, readwrite, readonly]\n", "", 1)
    assert changed != spec
    (tmp_path / "sessions.yaml").write_text(changed)
    monkeypatch.setattr(resources, "spec_path", lambda: tmp_path / "sessions.yaml")
    with pytest.raises(SpecError, match="listSessions declares no x-required-roles"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/unused.db"))
