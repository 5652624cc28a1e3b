"""Hostile HTTP against a real server: what uvicorn refuses before the app is in the envelope
too, and huge bodies are refused without being read into memory."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.support.live_server import cli_json, running_server, server_env

pytestmark = pytest.mark.live_server
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(database_url_for_module, tmp_path_factory):
    env = server_env(database_url_for_module)
    user = cli_json(env, "user", "create", "--email", "mallory@example.com")
    secret = cli_json(env, "key", "create", "--user", user["id"])["secret"]
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with running_server(env, log_path=log) as (base, process):
        port = int(base.split(":")[2].split("/")[0])
        yield port, secret, process, log


def _exchange(port: int, request: bytes, body_stream=None, timeout: float = 10) -> bytes:
    """Send `request` (and then `body_stream`'s chunks while the server reads); the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        try:
            for chunk in body_stream or ():
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we wait for
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def _status_and_body(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nX-Null: a\x00b\r\n\r\n",
        b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)),  # TLS to a plain port
        b"GET /api/v1/sessions\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["bad-header", "nul-in-header", "bad-length", "tls", "nul-in-target"],
)
def test_requests_that_are_not_http_get_400_in_the_envelope(server, request_bytes):
    port, *_ = server
    status, headers, body = _status_and_body(_exchange(port, request_bytes))
    assert status == 400
    assert headers["content-type"] == "application/json" and headers["x-request-id"]
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request" and "not valid HTTP/1.1" in error["message"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 40_000 + b"\r\n\r\n",
        b"GET /api/v1/sessions?" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\n" + b"X-Many: b\r\n" * 5000 + b"\r\n",
    ],
    ids=["one-huge-header", "huge-target", "many-headers"],
)
def test_a_request_head_over_the_limit_gets_431_in_the_envelope(server, request_bytes):
    port, *_ = server
    status, headers, body = _status_and_body(_exchange(port, request_bytes))
    assert status == 431 and headers["x-request-id"]
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_a_head_of_megabytes_is_refused_without_being_read(server):
    port, _secret, process, _log = server
    before = _rss_mb(process.pid)
    head = b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nX-Endless: "
    status, _headers, _body = _status_and_body(_exchange(port, head, (b"a" * MB for _ in range(50))))
    assert status == 431
    assert _rss_mb(process.pid) - before < 20


def test_a_head_within_the_limit_is_served(server):
    port, secret, *_ = server
    request = (
        f"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
        f"X-Padding: {'p' * 20_000}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, _headers, body = _status_and_body(_exchange(port, request))
    assert status == 200 and json.loads(body)["object"] == "list"


def test_a_50_mb_body_is_refused_without_being_read(server):
    port, secret, process, _log = server
    before = _rss_mb(process.pid)
    head = (
        f"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {50 * MB}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = _exchange(port, head, (b" " * MB for _ in range(50)))
    status, headers, body = _status_and_body(answer)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers["connection"] == "close"
    assert time.monotonic() - started < 10
    assert _rss_mb(process.pid) - before < 20


def test_a_50_mb_chunked_body_is_refused_at_the_limit(server):
    port, secret, process, _log = server
    before = _rss_mb(process.pid)
    head = (
        f"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n" % MB + b" " * MB + b"\r\n"
    status, _headers, body = _status_and_body(_exchange(port, head, (chunk for _ in range(50))))
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert _rss_mb(process.pid) - before < 20


def test_the_server_logged_no_traceback(server):
    *_, log = server
    assert "Traceback" not in log.read_text()
