"""Bad input gets a clear 4xx in the one error envelope; nothing answers with a stack trace."""

from __future__ import annotations

import io
import logging

import pytest

from sessions_api.core.logs import RequestContextFilter, logging_config
from tests.support.api import DEVICES, SESSIONS, assert_error

A_SESSION = f"{SESSIONS}/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10"


@pytest.fixture
def alice(world):
    return world.member()


@pytest.mark.parametrize(
    ("path", "params", "mentions"),
    [
        (SESSIONS, {"limit": "0"}, "limit"),
        (SESSIONS, {"limit": "501"}, "limit"),
        (SESSIONS, {"limit": "-1"}, "limit"),
        (SESSIONS, {"limit": "ten"}, "limit"),
        (SESSIONS, {"limit": "1.5"}, "limit"),
        (SESSIONS, {"limit": ""}, "limit"),
        (SESSIONS, {"before": "yesterday"}, "before"),
        (SESSIONS, {"before": "2026-11-28T09:14:03"}, "before"),  # naive: no offset
        (SESSIONS, {"before": "2026-11-28"}, "before"),
        (SESSIONS, {"before": "2026-13-01T00:00:00Z"}, "before"),
        (SESSIONS, {"before": "2026-02-30T00:00:00Z"}, "before"),
        (SESSIONS, {"before": "2026-11-28T25:00:00Z"}, "before"),
        (SESSIONS, {"before": "2026-11-28T09:14:03+24:00"}, "before"),
        (SESSIONS, {"befor": "2026-11-28T09:14:03Z"}, "befor"),  # a typo is not silently ignored
        (f"{SESSIONS}/not-a-uuid", {}, "sessionId"),
        (f"{SESSIONS}/3b0e8c8e1f4a4c479a3e8f6d2b7c5a10", {}, "sessionId"),
        (A_SESSION, {"limit": "5"}, "limit"),
    ],
)
def test_bad_parameters_get_400_naming_the_parameter(client, alice, path, params, mentions):
    body = assert_error(client.get(path, params=params, headers=alice.headers), 400, "invalid_request")
    assert mentions in body["error"]["message"]


def test_an_overlong_organization_header_gets_a_clear_error(client, alice):
    response = client.get(SESSIONS, headers=alice.acting_on("x" * 65))
    # The organization cannot exist; the answer does not say more than that.
    assert_error(response, 403, "forbidden")


def test_unknown_routes_get_404_in_the_envelope(client, alice):
    for path in ("/", "/api/v1", "/api/v1/session", "/api/v2/sessions", f"{A_SESSION}/extra"):
        assert_error(client.get(path, headers=alice.headers), 404, "not_found")


def test_error_messages_stay_within_the_documented_1000_characters(client, alice):
    response = client.get("/api/v1/" + "x" * 5000, headers=alice.headers)
    body = assert_error(response, 404, "not_found")
    assert len(body["error"]["message"]) == 1000 and body["error"]["message"].endswith("...")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", SESSIONS, {"GET", "HEAD", "POST"}),
        ("PATCH", SESSIONS, {"GET", "HEAD", "POST"}),
        ("DELETE", SESSIONS, {"GET", "HEAD", "POST"}),
        ("POST", A_SESSION, {"GET", "HEAD", "PATCH"}),
        ("DELETE", A_SESSION, {"GET", "HEAD", "PATCH"}),
        ("GET", f"{A_SESSION}/release", {"POST"}),
        ("POST", DEVICES, {"GET", "HEAD"}),
    ],
)
def test_wrong_methods_get_405_with_every_allowed_method(client, alice, method, path, allowed):
    response = client.request(method, path, headers=alice.headers)
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed


def test_an_unexpected_failure_is_a_logged_500_with_the_request_id(client, alice, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr("sessions_api.models.sessions.list_page", broken)
    with caplog.at_level(logging.ERROR):
        response = client.get(SESSIONS, headers={**alice.headers, "X-Request-Id": "trace-me-42"})
    body = assert_error(response, 500, "internal_error")
    assert response.headers["X-Request-Id"] == "trace-me-42"
    assert "trace-me-42" in body["error"]["message"]
    assert "disk is on fire" not in response.text
    assert any("disk is on fire" in str(record.exc_info) for record in caplog.records)


def test_every_response_carries_a_request_id(client, alice):
    responses = [
        client.get(SESSIONS, headers=alice.headers),
        client.get(SESSIONS),
        client.get("/nowhere"),
        client.get(SESSIONS, params={"limit": 0}, headers=alice.headers),
    ]
    ids = {response.headers["X-Request-Id"] for response in responses}
    assert len(ids) == len(responses) and all(len(request_id) == 32 for request_id in ids)


def test_a_callers_request_id_is_echoed_only_when_well_formed(client, alice):
    echoed = client.get(SESSIONS, headers={**alice.headers, "X-Request-Id": "abc-123.DEF_4"})
    assert echoed.headers["X-Request-Id"] == "abc-123.DEF_4"
    replaced = client.get(SESSIONS, headers={**alice.headers, "X-Request-Id": "bad id\twith spaces"})
    assert replaced.headers["X-Request-Id"] != "bad id\twith spaces"


def test_the_access_log_line_carries_the_request_id(client, alice, caplog):
    caplog.handler.addFilter(RequestContextFilter())  # as the server's logging config does
    with caplog.at_level(logging.INFO, logger="sessions_api.access"):
        client.get(SESSIONS, headers={**alice.headers, "X-Request-Id": "log-me-7"})
    lines = [record for record in caplog.records if record.name == "sessions_api.access"]
    assert lines and "GET /api/v1/sessions 200" in lines[-1].getMessage()
    assert lines[-1].request_id == "log-me-7"


def test_a_line_break_in_a_path_cannot_forge_a_log_line(client, alice):
    """The plain format writes each record on one line, control characters escaped."""
    line = logging_config("INFO", "plain")["formatters"]["line"]
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(line["()"](line["format"]))
    handler.addFilter(RequestContextFilter())
    access = logging.getLogger("sessions_api.access")
    access.addHandler(handler)
    level, access.level = access.level, logging.INFO
    try:
        client.get(
            "/api/v1/sessions%0a2026-12-02 INFO [-] sessions_api.access: 10.0.0.1 GET /admin 200", headers=alice.headers
        )
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    written = out.getvalue()
    assert written.count("\n") == 1 and "%0a" not in written and "sessions\\n2026-12-02" in written
