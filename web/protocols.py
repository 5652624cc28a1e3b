"""uvicorn's HTTP protocol, answering requests it cannot parse in the error envelope.

uvicorn refuses a request that is not valid HTTP/1.1 (a bad header, an overlong line) itself,
before any app sees it, with a plain-text 400. This protocol answers the same refusal with the
envelope (`invalid_request`) and an `X-Request-Id` that its warning in the log also carries.
It subclasses the protocol uvicorn would pick (httptools, else h11) and overrides one method,
`send_400_response` (README, "Upgrade checklist").
"""

from __future__ import annotations

import logging
import uuid

from sessions_api.web.errors import error_body

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
except ImportError:  # uvicorn without httptools uses h11
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol  # type: ignore[assignment]

logger = logging.getLogger("sessions_api.access")


def invalid_http_response(reason: str, default_headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes]:
    """(request id, the bytes of a 400 in the envelope that closes the connection)."""
    request_id = uuid.uuid4().hex
    body = error_body("invalid_request", f"The request is not valid HTTP/1.1: {reason.rstrip('.')}.")
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    head = b"HTTP/1.1 400 Bad Request\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return request_id, head + b"\r\n" + body


class EnvelopeHttpProtocol(_UvicornProtocol):
    def send_400_response(self, msg: str) -> None:
        request_id, response = invalid_http_response(msg, list(self.server_state.default_headers))
        logger.warning("refused a request that is not valid HTTP/1.1 (%s) [%s]", msg, request_id)
        self.transport.write(response)
        self.transport.close()
