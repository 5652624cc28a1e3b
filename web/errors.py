"""One error shape for every failure: `{"error": {"code": ..., "message": ...}}`.

Errors come from three places and all are mapped here: our own `ApiError` and the data
layer's exceptions; Connexion's problems (request validation, security) and Starlette's
HTTP exceptions (unknown route, wrong method), which share the base class HTTPException;
and anything unexpected, which becomes a logged 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import orjson
from connexion import AsyncApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from sessions_api.core.heavy_reads import ReadTimeLimitExceeded, TooManyHeavyReads
from sessions_api.core.logs import current_request_id
from sessions_api.core.stores import StoreUnavailable
from sessions_api.models.errors import (
    AccessDenied,
    Conflict,
    DataError,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    RangeNotSatisfiable,
    Refused,
    Throttled,
    TooLarge,
)

logger = logging.getLogger(__name__)

CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
UNAUTHENTICATED_MESSAGE = "Send a valid API key as 'Authorization: Bearer <key>'."
FORBIDDEN_MESSAGE = "The selected organization does not exist or you are not a member of it."
RETRY_AFTER_SECONDS = 5
# A heavy read of the same organization usually ends within a second or two.
HEAVY_READ_RETRY_SECONDS = 2


class ApiError(Exception):
    """An error answer decided by our own code."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or CODE_BY_STATUS[status]
        self.message = message
        self.headers = headers or {}


# Errors are the caller's own answers too, as successful ones are (web.dispatch): no cache keeps them.
NO_STORE = {"Cache-Control": "no-store"}
MAX_MESSAGE_LENGTH = 1000  # the spec's maxLength of `error.message`


def error_body(code: str, message: str) -> bytes:
    if len(message) > MAX_MESSAGE_LENGTH:  # e.g. a 404 naming a very long path
        message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> ConnexionResponse:
    """The envelope as an error handler answers it."""
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        body=error_body(code, message),
        headers={**(headers or {}), **NO_STORE},
    )


def asgi_error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """The envelope as a middleware answers it, outside Connexion's error handlers."""
    headers = {**(headers or {}), **NO_STORE}
    return Response(error_body(code, message), status_code=status, headers=headers, media_type="application/json")


def register(app: AsyncApp, allowed_at: Callable[[str], str | None]) -> None:
    """Map every failure to the envelope; `allowed_at(path)` gives a 405's `Allow` header."""

    async def http_exception(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
        return _http_exception(request, exc, allowed_at)

    app.add_error_handler(ApiError, _api_error)
    app.add_error_handler(DataError, _data_error)
    # Connexion registers its own handler for ProblemException, the more specific class.
    app.add_error_handler(ProblemException, http_exception)
    app.add_error_handler(HTTPException, http_exception)
    app.add_error_handler(ClientDisconnect, _client_gone)
    app.add_error_handler(TooManyHeavyReads, _too_many_heavy_reads)
    app.add_error_handler(ReadTimeLimitExceeded, _report_timeout)
    app.add_error_handler(StoreUnavailable, _store_unavailable)
    app.add_error_handler(PoolTimeout, _unavailable)
    app.add_error_handler(OperationalError, _unavailable)
    app.add_error_handler(DBAPIError, _database_error)
    app.add_error_handler(Exception, _unexpected)


async def _api_error(_request: ConnexionRequest, exc: ApiError) -> ConnexionResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _data_error(_request: ConnexionRequest, exc: DataError) -> ConnexionResponse:
    if isinstance(exc, AccessDenied):
        return error_response(403, "forbidden", FORBIDDEN_MESSAGE)
    if isinstance(exc, Forbidden):
        return error_response(403, "forbidden", str(exc))
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, InvalidInput):
        return error_response(400, "invalid_request", str(exc))
    if isinstance(exc, Throttled):
        return error_response(429, exc.code, str(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, RangeNotSatisfiable):
        return error_response(416, "range_not_satisfiable", str(exc), {"Content-Range": f"bytes */{exc.size}"})
    if isinstance(exc, TooLarge):
        return error_response(413, exc.code, str(exc))
    if isinstance(exc, Gone):
        return error_response(410, exc.code, str(exc))
    if isinstance(exc, Refused):
        return error_response(409 if isinstance(exc, Conflict) else 422, exc.code, str(exc))
    return await _unexpected(_request, exc)


def _http_exception(
    request: ConnexionRequest, exc: HTTPException, allowed_at: Callable[[str], str | None]
) -> ConnexionResponse:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status >= 500:
        # Also where a response that breaks the spec lands when responses are validated.
        logger.error("%s %s failed with %s: %s", request.method, _path(request), status, exc.detail)
        return _internal_error_response(status)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
        return error_response(401, "unauthenticated", UNAUTHENTICATED_MESSAGE, headers)
    if status == 403:
        return error_response(403, "forbidden", FORBIDDEN_MESSAGE, headers)
    if status == 404:
        message = f"No operation of this API is at {_path(request)}."
    elif status == 415:
        message = "Send the request body as application/json."
    elif status == 405:
        headers.pop("allow", None)
        # Connexion routes each operation on its own: its 405 names one method, the spec's path more.
        allowed = allowed_at(_path(request)) or headers.get("Allow", "")
        headers["Allow"] = allowed
        message = f"{request.method} is not allowed here; allowed: {allowed}."
    else:
        message = _readable(exc.detail) or f"The request was rejected ({status})."
    return error_response(status, CODE_BY_STATUS.get(status, "invalid_request"), message, headers)


async def _client_gone(request: ConnexionRequest, _exc: ClientDisconnect) -> ConnexionResponse:
    """The client went away mid-body (an upload cut off): nobody reads this answer."""
    logger.info("%s %s: the client went away before its body ended", request.method, _path(request))
    return error_response(400, "invalid_request", "The request body ended early.")


async def _too_many_heavy_reads(_request: ConnexionRequest, exc: TooManyHeavyReads) -> ConnexionResponse:
    return error_response(429, "too_many_heavy_reads", str(exc), {"Retry-After": str(HEAVY_READ_RETRY_SECONDS)})


async def _report_timeout(request: ConnexionRequest, exc: ReadTimeLimitExceeded) -> ConnexionResponse:
    logger.warning("%s %s: a heavy read passed its time limit of %gs", request.method, _path(request), exc.seconds)
    message = f"{exc} Ask for a shorter range or a coarser granularity, or retry later."
    return error_response(503, "report_timeout", message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _unavailable(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """The database is unreachable, overloaded or too slow: a passing condition, so 503."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    logger.warning("%s %s: database unavailable: %s", request.method, _path(request), reason)
    return error_response(
        503,
        "unavailable",
        f"The database is unavailable right now; retry in {RETRY_AFTER_SECONDS} seconds.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _store_unavailable(request: ConnexionRequest, exc: StoreUnavailable) -> ConnexionResponse:
    """The artifact store is away, refuses us, or its disk is full: the operator's to fix, so 503."""
    logger.warning("%s %s: artifact store unavailable: %s", request.method, _path(request), exc)
    return error_response(
        503,
        "unavailable",
        f"The artifact store is unavailable right now; retry in {RETRY_AFTER_SECONDS} seconds.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_error(request: ConnexionRequest, exc: DBAPIError) -> ConnexionResponse:
    if exc.connection_invalidated:  # the connection died under the statement
        return await _unavailable(request, exc)
    return await _unexpected(request, exc)


async def _unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    logger.error("%s %s raised an unexpected error", request.method, _path(request), exc_info=exc)
    return _internal_error_response(500)


def _internal_error_response(status: int) -> ConnexionResponse:
    return error_response(status, CODE_BY_STATUS.get(status, "internal_error"), internal_error_message())


def internal_error_response(status: int) -> Response:
    return asgi_error_response(status, CODE_BY_STATUS.get(status, "internal_error"), internal_error_message())


def internal_error_message() -> str:
    return f"An unexpected error occurred; it was logged with request id {current_request_id()}."


def _readable(detail: object) -> str:
    """Connexion's validation details, made into one sentence without schema dumps."""
    text = str(detail or "").strip()
    text = text.split("\n\nFailed validating", 1)[0]
    text = re.sub(r"\s+", " ", text)
    if text and not text.endswith("."):
        text += "."
    return text[:1].upper() + text[1:500]


def _path(request: ConnexionRequest) -> str:
    """The request's path, as the server decoded it (`request.url` would also decode the query
    string, which may not be UTF-8)."""
    return str(request.scope.get("path", ""))
