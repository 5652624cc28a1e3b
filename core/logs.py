"""Logging: the request id every line carries, and the server's logging configuration."""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Any

_request_id: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled ('-' outside requests)."""
    return _request_id.get()


def bind_request_id(request_id: str) -> Token[str]:
    return _request_id.set(request_id)


def unbind_request_id(token: Token[str]) -> None:
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record, for formats that print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def logging_config(level: str) -> dict[str, Any]:
    """Every line carries the request id it was written for ('-' outside requests)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
        "root": {"handlers": ["stderr"], "level": level},
        # Our access log replaces uvicorn's; Connexion logs every 401 at INFO.
        "loggers": {"uvicorn.access": {"level": "WARNING"}, "connexion": {"level": "WARNING"}},
    }
