"""Endpoints for orchestrators and monitoring, outside `/api/v1`, no key needed.

- `GET /healthz`: 200 while the process serves requests; it touches nothing else.
- `GET /readyz`: 200 when the database answers and its schema is the one this code needs,
  with how many stored webhook signing secrets this server cannot unseal (`unreadableSecrets`,
  counted at most once a minute: a key rotation it was not told of; their endpoints' deliveries
  fail); else 503 `unavailable` with `Retry-After` and a reason code (`database_timeout`,
  `database_unreachable`, `schema_behind`) and nothing else: no host, port or driver text for
  whoever can reach the port. The server's log has the details.
- `GET /metrics`: the Prometheus exposition (unless metrics are off or have a listener of
  their own).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sessions_api.core import db_threads, heavy_reads
from sessions_api.models import schema_version, webhooks
from sessions_api.web import metrics
from sessions_api.web.documents import app_path
from sessions_api.web.errors import RETRY_AFTER_SECONDS, ApiError
from sessions_api.web.observe import answered_by

HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"
logger = logging.getLogger(__name__)
# A readiness check that takes longer than this answers 503: the process cannot serve now.
READY_TIMEOUT_SECONDS = 2.0
_OK = orjson.dumps({"status": "ok"})
# How often (s) /readyz counts the signing secrets this server cannot unseal (it reads every endpoint).
UNREADABLE_SECRETS_REFRESH_SECONDS = 60.0


class ProbesMiddleware:
    def __init__(self, app: ASGIApp, serve_metrics: bool) -> None:
        self.app = app
        self.paths = {HEALTHZ, READYZ} | ({METRICS} if serve_metrics else set())
        # (monotonic instant, count) of the last count of unreadable signing secrets.
        self._unreadable: tuple[float, int] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = app_path(scope) if scope["type"] == "http" else ""
        if path not in self.paths:
            await self.app(scope, receive, send)
            return
        answered_by(scope, path.lstrip("/"))
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        if path == HEALTHZ:
            response = Response(_OK, media_type="application/json")
        elif path == READYZ:
            await _check_ready()
            ready = {"status": "ready", "unreadableSecrets": await self._unreadable_secrets()}
            response = Response(orjson.dumps(ready), media_type="application/json")
        else:
            body = await db_threads.read(metrics.exposition)
            response = Response(body, media_type=metrics.CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)

    async def _unreadable_secrets(self) -> int:
        now = time.monotonic()
        if self._unreadable is None or now - self._unreadable[0] > UNREADABLE_SECRETS_REFRESH_SECONDS:
            # Every endpoint is read: a heavy read, on the threads and within the probe's time.
            with heavy_reads.time_limited(READY_TIMEOUT_SECONDS):
                self._unreadable = (now, await db_threads.read(webhooks.count_unreadable_secrets))
        return self._unreadable[1]


async def _check_ready() -> None:
    try:
        behind = await asyncio.wait_for(db_threads.read(schema_version.behind_by), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("not ready: the database did not answer within %g seconds", READY_TIMEOUT_SECONDS)
        raise _not_ready("database_timeout") from None
    except Exception:
        logger.warning("not ready: the database does not answer", exc_info=True)
        raise _not_ready("database_unreachable") from None
    if behind is not None:
        logger.warning("not ready: %s", behind)
        raise _not_ready("schema_behind")


def _not_ready(reason: str) -> ApiError:
    return ApiError(503, f"Not ready: {reason}.", "unavailable", {"Retry-After": str(RETRY_AFTER_SECONDS)})
