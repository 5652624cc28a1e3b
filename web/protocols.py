"""uvicorn's HTTP protocol, with a bound on request heads and its refusals in the envelope.

uvicorn refuses a request that is not valid HTTP/1.1 (a bad header, a NUL in the target)
itself, before any app sees it, with a plain-text 400; and with httptools it reads a request
head of any size. This protocol answers those refusals with the envelope (`invalid_request`)
and an `X-Request-Id` that its warning in the log also carries, and refuses a request line
and headers over `SESSIONS_API_MAX_HEADER_BYTES` with 431 `headers_too_large` before they
are buffered. It subclasses the protocol uvicorn would pick (httptools, else h11) and
overrides `send_400_response`, `data_received`, `on_message_begin`, `on_headers_complete`
(docs/contributors/internals.md), and `shutdown`, which ends open event streams at once.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sessions_api.core.settings import Settings
from sessions_api.web.errors import error_body

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
except ImportError:  # uvicorn without httptools uses h11, bounded by h11_max_incomplete_event_size
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol  # type: ignore[assignment]

logger = logging.getLogger("sessions_api.access")
_END_OF_HEAD = b"\r\n\r\n"
# `serve` gives uvicorn SESSIONS_API_MAX_HEADER_BYTES as h11's bound; this one where it did not.
_DEFAULT_MAX_HEADER_BYTES: int = Settings.model_fields["max_header_bytes"].default
_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


def refusal(status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes]:
    """(request id, the bytes of an error answer in the envelope that closes the connection)."""
    request_id = uuid.uuid4().hex
    body = error_body(code, message)
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    status_line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
    return request_id, status_line + b"".join(
        name + b": " + value + b"\r\n" for name, value in headers
    ) + b"\r\n" + body


def _follows_events(scope: Any) -> bool:
    return any(name == b"accept" and b"text/event-stream" in value for name, value in scope.get("headers", ()))


class EnvelopeHttpProtocol(_UvicornProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._tail = b""  # the last bytes seen, for an end of head split between reads

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            seen = self._tail + data
            end = seen.find(_END_OF_HEAD)
            self._head_bytes += len(data) if end < 0 else max(0, end + len(_END_OF_HEAD) - len(self._tail))
            self._tail = seen[-3:]
            limit = self.config.h11_max_incomplete_event_size or _DEFAULT_MAX_HEADER_BYTES
            if self._head_bytes > limit:
                self._refuse(431, "headers_too_large", f"The request line and headers exceed {limit} bytes.")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._head_bytes, self._in_head, self._tail = 0, True, b""
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def shutdown(self) -> None:
        """A stopping server lets requests finish (uvicorn's graceful shutdown), but a stream of
        events would run to its end, minutes away: it is told its client went away, so that it
        ends now and the client resumes elsewhere with Last-Event-ID."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and _follows_events(cycle.scope):
            self.transport.close()  # the app hears its client went away (handlers.events)
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "invalid_request", f"The request is not valid HTTP/1.1: {msg.rstrip('.')}.")

    def _refuse(self, status: int, code: str, message: str) -> None:
        request_id, response = refusal(status, code, message, list(self.server_state.default_headers))
        logger.warning("refused a request before it reached the app: %s [%s]", message, request_id)
        self.transport.write(response)
        self.transport.close()
