"""The request id: set per request, sent back as a header, and stamped on every log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_INCOMING = re.compile(r"[A-Za-z0-9._-]{1,64}")
_request_id: ContextVar[str] = ContextVar("request_id", default="-")
access_logger = logging.getLogger("sessions_api.access")


def current_request_id() -> str:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record, for formats that print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class RequestIdMiddleware:
    """Gives each request an id (the caller's, if well-formed), answers with it in a header,
    and writes one access log line per request carrying it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._incoming(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Only reached when an error handler itself failed: still answer in the envelope.
            logging.getLogger(__name__).exception("unhandled error while handling an error")
            if status:
                raise
            status = 500
            await _send_internal_error(send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    '%s %s %s %d %.1fms', (scope.get("client") or ("-",))[0], scope["method"],
                    scope["path"], status, (time.perf_counter() - started) * 1000,
                )
            _request_id.reset(token)

    @staticmethod
    def _incoming(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                return text if _VALID_INCOMING.fullmatch(text) else None
        return None


async def _send_internal_error(send: Send) -> None:
    from sessions_api.errors import error_response, internal_error_message

    response = error_response(500, "internal_error", internal_error_message())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(response.body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
