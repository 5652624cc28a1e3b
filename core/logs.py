"""Logging: what each line knows of the request it was written for, and the configuration.

Every record carries `request_id` ('-' outside requests), and `organization_id` and `key_id`
once the request is authenticated. `SESSIONS_API_LOG_FORMAT=json` writes one JSON object per
line (python-json-logger) with those fields and whatever a call adds in `extra`.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Any

# The request being handled: its id and what authentication found out. One dict per request,
# updated in place, so that what a security handler notes is seen by the access log after it.
_request: ContextVar[dict[str, Any] | None] = ContextVar("request_log_context", default=None)
_NO_REQUEST: dict[str, Any] = {"request_id": "-", "organization_id": None, "key_id": None}


def bind_request(request_id: str) -> Token[dict[str, Any] | None]:
    return _request.set({"request_id": request_id, "organization_id": None, "key_id": None})


def unbind_request(token: Token[dict[str, Any] | None]) -> None:
    _request.reset(token)


def note_caller(*, organization_id: object, key_id: object) -> None:
    """Remember who the current request acts as, for its log lines."""
    context = _request.get()
    if context is not None:
        context["organization_id"], context["key_id"] = str(organization_id), str(key_id)


def current_request_id() -> str:
    """The id of the request being handled ('-' outside requests)."""
    return str((_request.get() or _NO_REQUEST)["request_id"])


class RequestContextFilter(logging.Filter):
    """Adds the request's id, organization and key to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _request.get() or _NO_REQUEST
        record.request_id = context["request_id"]
        record.organization_id = context["organization_id"]
        record.key_id = context["key_id"]
        return True


def lean_records() -> None:
    """Records without what no line of ours shows: the caller's file, line and function, the
    thread's and the process's names (the logging HOWTO's "Optimization" settings). Finding
    the caller walks the stack for every record, and there is an access line per request
    (what it costs is in BENCHMARKS.md). Tests' captured logs show no file:line."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


_PLAIN = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
# Control characters and Unicode's line separators, as escapes: a `%0a` in a path must not
# start a line of its own that a reader (or a log shipper) takes for another record.
_ESCAPES = {
    code: {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(code, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


class OneLineFormatter(logging.Formatter):
    """The plain format: each record exactly one line, its control characters escaped (a
    traceback too, its line breaks as `\\n`)."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(_ESCAPES)


_JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(request_id)s %(organization_id)s %(key_id)s"


def logging_config(level: str, log_format: str = "plain") -> dict[str, Any]:
    """The dictConfig of a server process: one line per record on stderr."""
    if log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON_FIELDS,
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601 in UTC
        }
    else:
        formatter = {"()": OneLineFormatter, "format": _PLAIN}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContextFilter}},
        "formatters": {"line": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["request"]}},
        "root": {"handlers": ["stderr"], "level": level},
        # Our access log replaces uvicorn's; Connexion logs every 401 at INFO; httpx every webhook
        # attempt (each is in the endpoint's deliveries list and the attempts metric instead).
        "loggers": {
            "uvicorn.access": {"level": "WARNING"},
            "connexion": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
        },
    }
