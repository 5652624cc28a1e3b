"""Hard limits on request bodies: the size, the JSON nesting, what the decoder refuses."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from sessions_api.web.app import create_app
from tests.support.api import DEVICES, SESSIONS, assert_error

LIMIT = 64 * 1024


@pytest.fixture
def alice(world):
    return world.member()


def _post(client, member, content: bytes, **headers):
    return client.post(
        SESSIONS, content=content, headers={**member.headers, "Content-Type": "application/json", **headers}
    )


def test_a_body_over_the_limit_gets_413(client, alice):
    body = json.dumps({"platform": "ios", "name": "x" * LIMIT}).encode()
    response = _post(client, alice, body)
    assert_error(response, 413, "payload_too_large")
    assert str(LIMIT) in response.json()["error"]["message"]
    assert response.headers["Connection"] == "close"


def test_a_body_at_the_limit_is_read(client, alice):
    body = json.dumps({"platform": "ios"}).encode().ljust(LIMIT)  # JSON allows trailing spaces
    assert _post(client, alice, body).status_code == 422  # read and validated: no such device


def test_a_declared_length_over_the_limit_is_refused_before_reading(app, alice):
    read: list[int] = []

    async def body():
        for _ in range(100):
            read.append(1)
            yield b" " * 1024

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return await client.post(
                SESSIONS,
                content=body(),
                headers={**alice.headers, "Content-Type": "application/json", "Content-Length": str(100 * 1024)},
            )

    assert_error(asyncio.run(send()), 413, "payload_too_large")
    assert read == []


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(app, alice):
    chunks_read = 0

    async def endless():
        nonlocal chunks_read
        while chunks_read < 10_000:  # 10 MB at most, should the limit not hold
            chunks_read += 1
            yield b" " * 1024

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return await client.post(
                SESSIONS, content=endless(), headers={**alice.headers, "Content-Type": "application/json"}
            )

    assert_error(asyncio.run(send()), 413, "payload_too_large")
    assert chunks_read <= LIMIT // 1024 + 2


def test_a_chunked_body_within_the_limit_is_read_like_a_sized_one(app, alice):
    async def chunks():
        yield b'{"platform": '
        yield b'"ios"}'

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return await client.post(
                SESSIONS, content=chunks(), headers={**alice.headers, "Content-Type": "application/json"}
            )

    response = asyncio.run(send())
    assert_error(response, 422, "no_matching_device")  # read, validated, and served: the fleet is empty


def test_settings_set_the_limit(settings, alice):
    from starlette.testclient import TestClient

    with TestClient(create_app(settings.replace(max_body_bytes=100))) as client:
        assert_error(
            _post(client, alice, b'{"platform": "ios", "name": "' + b"x" * 100 + b'"}'), 413, "payload_too_large"
        )
        assert _post(client, alice, b'{"platform": "ios"}').status_code == 422


@pytest.mark.parametrize("depth", [33, 500, 1030])
def test_json_nested_too_deep_gets_400(client, alice, depth):
    body = b'{"platform": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    assert_error(_post(client, alice, body), 400, "invalid_request")


def test_100000_levels_of_nesting_get_400_not_500(settings, alice):
    from starlette.testclient import TestClient

    body = b'{"platform": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with TestClient(create_app(settings.replace(max_body_bytes=1_000_000)), raise_server_exceptions=False) as client:
        assert_error(_post(client, alice, body), 400, "invalid_request")


def test_nesting_within_the_bound_is_validated_as_usual(client, alice):
    body = b'{"platform": ' + b"[" * 31 + b"]" * 31 + b"}"  # 32 levels with the object
    response = _post(client, alice, body)
    body = assert_error(response, 400, "invalid_request")
    assert "nested" not in body["error"]["message"]  # refused by the schema, not the depth bound


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe{}",  # not UTF-8
        b'{"platform": "\xc3\x28"}',  # an invalid UTF-8 sequence in a string
        b'{"platform": "ios\x00"}',  # a raw NUL in a string
        b'{"platform": "\\ud800"}',  # a lone surrogate
        b'{"platform": "ios", "maxDurationMinutes": 1e999}',  # out of range
        b'{"platform": "ios", "maxDurationMinutes": 123456789012345678901234567890}',
        b'{"platform": NaN}',
        b"\x00" * 64,
        b"[" * 70_000,
    ],
)
def test_json_the_decoder_refuses_gets_400(client, alice, content):
    response = _post(client, alice, content)
    assert response.status_code in (400, 413), response.text
    assert_error(
        response, response.status_code, "invalid_request" if response.status_code == 400 else "payload_too_large"
    )


def test_text_with_the_nul_character_gets_400_wherever_it_comes(client, world):
    """No database stores NUL in text (PostgreSQL refuses it): it is refused at the door."""
    alice = world.member()
    answers = {
        "body": client.post(SESSIONS, json={"platform": "ios", "name": "iPhone\x00"}, headers=alice.headers),
        "body name": client.post(
            SESSIONS,
            content=b'{"platform": "ios", "x\\u0000": 1}',
            headers={**alice.headers, "Content-Type": "application/json"},
        ),
        "query": client.get(DEVICES, params={"osVersion": "18\x00"}, headers=alice.headers),
        "header": client.post(
            SESSIONS, json={"platform": "ios"}, headers={**alice.headers, "Idempotency-Key": "k\x00"}
        ),
    }
    for where, response in answers.items():
        body = assert_error(response, 400, "invalid_request")
        assert "NUL" in body["error"]["message"], where
