"""What operators see of each request: its id, one access log line, and the request metrics;
and what clients see of its budgets: the RateLimit headers (web.rate_limits).

The outermost of our middlewares, so that every answer, errors included, carries
`X-Request-Id` and the budgets it spent, and is counted (one wrapper of `send` for both:
each wrapper costs every response). Requests are labelled by operationId (from Connexion's
routing context), or by what else answered them (`openapi.json`, `healthz`, ...), or
`unmatched`: never by raw path, which would carry ids.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessions_api.core import db
from sessions_api.core.logs import bind_request, unbind_request
from sessions_api.core.metrics import REQUEST_DURATION, REQUESTS
from sessions_api.web.errors import internal_error_response
from sessions_api.web.rate_limits import budget_headers
from sessions_api.web.requests import routed_handler_path
from sessions_api.web.state import AppState

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_VALID_INCOMING = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Where our own middlewares, which answer outside Connexion's routing, write their label.
_ANSWERED_BY = "sessions_api.answered_by"
# Answers that are not worth a line at INFO: probes come every second.
_QUIET = frozenset({"healthz", "readyz", "metrics"})
access_logger = logging.getLogger("sessions_api.access")
logger = logging.getLogger(__name__)


def answered_by(scope: Scope, label: str) -> None:
    """Label the request for the access log and the metrics (for middlewares that answer it)."""
    scope.setdefault("extensions", {})[_ANSWERED_BY] = label


class Route:
    """What the log and the metrics call an operation: its operationId and path template."""

    def __init__(self, operation_id: str, template: str) -> None:
        self.operation_id = operation_id
        self.template = template


_UNMATCHED = Route("unmatched", "-")


class ObserveMiddleware:
    """Gives each request an id (the caller's, if well-formed), answers with it in a header,
    writes one access log line, and counts the request and its duration. As the outermost,
    it also puts the app's state in the scope and binds its database to the request's work."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        self.routes = {
            operation.handler_path: Route(operation.operation_id, operation.route) for operation in state.operations
        }
        self.metrics = state.settings.metrics
        # The metrics' children by labels: labels() takes a lock and builds a key each call.
        self._counted: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._incoming(scope) or os.urandom(16).hex()
        token = bind_request(request_id)
        bound = db.bind(self.state.database)
        self.state.enter(scope)
        # Connexion copies the scope as it routes, but not this dict: what it notes here, we see.
        extensions = scope.setdefault("extensions", {})
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (_REQUEST_ID, request_id.encode()),
                    *budget_headers(extensions, message),
                ]
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
            self._observe(scope, extensions, status, time.perf_counter() - started)
            db.unbind(bound)
            unbind_request(token)

    def _observe(self, scope: Scope, extensions: dict[str, Any], status: int, seconds: float) -> None:
        route = self._route(extensions)
        if self.metrics:
            labels = (route.operation_id, scope["method"], status)
            counted = self._counted.get(labels)
            if counted is None:
                counted = self._counted[labels] = (REQUESTS.labels(*labels), REQUEST_DURATION.labels(labels[0]))
            counted[0].inc()
            counted[1].observe(seconds)
        level = logging.DEBUG if route.operation_id in _QUIET else logging.INFO
        if access_logger.isEnabledFor(level):
            client = (scope.get("client") or ("-",))[0]
            access_logger.log(
                level,
                "%s %s %s %d %.1fms",
                client,
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "route": route.template,
                    "operation": route.operation_id,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": client,
                },
            )

    def _route(self, extensions: dict[str, Any]) -> Route:
        label = extensions.get(_ANSWERED_BY)
        if label is not None:
            return Route(label, label)
        handler_path = routed_handler_path({"extensions": extensions})
        return self.routes.get(handler_path, _UNMATCHED) if handler_path else _UNMATCHED

    @staticmethod
    def _incoming(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                return text if _VALID_INCOMING.fullmatch(text) else None
        return None
