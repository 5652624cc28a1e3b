"""The request id: set per request, sent back as a header, and stamped on every log line."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessions_api.core.logs import bind_request_id, unbind_request_id
from sessions_api.web.errors import internal_error_response

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_INCOMING = re.compile(r"[A-Za-z0-9._-]{1,64}")
access_logger = logging.getLogger("sessions_api.access")
logger = logging.getLogger(__name__)


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
        token = bind_request_id(request_id)
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
            logger.exception("unhandled error while handling an error")
            if status:
                raise
            status = 500
            await internal_error_response(500)(scope, receive, send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %s %d %.1fms",
                    (scope.get("client") or ("-",))[0],
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            unbind_request_id(token)

    @staticmethod
    def _incoming(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                return text if _VALID_INCOMING.fullmatch(text) else None
        return None
