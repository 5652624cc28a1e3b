"""Hostile requests, generated: huge, deep, binary, NUL bytes, invalid UTF-8, repeated
parameters, in bodies, headers and query strings. Whatever arrives, no answer is a 500 and
every error is the envelope. (Requests that are not even HTTP are uvicorn's to refuse:
tests/processes/test_hostile_http.py.)"""

from __future__ import annotations

import asyncio
import json
import os

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.support.api import API

PATHS = [
    f"{API}/sessions",
    f"{API}/sessions/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10",
    f"{API}/sessions/3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10/release",
    f"{API}/devices",
    f"{API}/organizations",
    f"{API}/openapi.json",
    "/healthz",
    "/readyz",
    "/nowhere",
]
HEADER_NAMES = [
    b"authorization",
    b"x-organization-id",
    b"idempotency-key",
    b"content-type",
    b"content-length",
    b"x-request-id",
    b"accept",
    b"transfer-encoding",
    b"x-\x00odd",
]
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\x00" * 50, b"\xff\xfe\xfd", b"%00", b"%ff%fe", b"\xc3\x28", b"A" * 70_000, b"9" * 400]),
)


def _deep(depth: int) -> bytes:
    return b'{"platform": ' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    hostile_bytes,
    st.integers(1, 3000).map(_deep),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=30,
    ).map(lambda value: json.dumps(value).encode()),
    st.just(b'{"platform": "ios", "platform": "android"}'),
)
queries = st.one_of(
    hostile_bytes,
    st.lists(
        st.sampled_from([b"limit=1", b"limit=0", b"limit=%00", b"before=%ff", b"status=live", b"user=x", b"&", b"="]),
        max_size=8,
    ).map(b"&".join),
    st.just(b"limit=1&limit=2&limit=3"),
)


def _request(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    return scope, [{"type": "http.request", "body": body, "more_body": False}]


async def _call(app, scope, messages) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []
    pending = iter(messages)

    async def receive():
        return next(pending, None) or {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


@pytest.fixture
def key_headers(world) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {world.member().secret}".encode())]


@hypothesis_settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "\x00GET"]),
    path=st.sampled_from(PATHS),
    query=queries,
    extra_headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), hostile_bytes), max_size=4),
    with_key=st.booleans(),
    body=bodies,
)
def test_no_hostile_request_gets_a_500_or_a_bare_error(
    app, key_headers, method, path, query, extra_headers, with_key, body
):
    headers = [*(key_headers if with_key else []), (b"content-type", b"application/json"), *extra_headers]
    status, response_headers, content = asyncio.run(_call(app, *_request(method, path, query, headers, body)))
    assert status < 500 or status == 503, (status, content[:300])
    assert response_headers.get(b"x-request-id")
    if status >= 400:
        assert response_headers[b"content-type"] == b"application/json", content[:300]
        error = orjson.loads(content)
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, error
