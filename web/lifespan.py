"""What each server process runs besides requests: the database threads and the expiry sweep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from starlette.concurrency import run_in_threadpool

from sessions_api.core import settings as settings_module
from sessions_api.models import leases

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Sizes the threads that run database calls, and releases expired sessions every few
    seconds, whether or not anyone calls the API."""
    settings = settings_module.current()
    # Connexion runs sync handlers, and the security handler its lookup, on anyio's default
    # thread limiter.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.database_threads()
    sweeper = asyncio.create_task(_sweep_expired_sessions(settings.expiry_sweep_seconds))
    try:
        yield
    finally:
        sweeper.cancel()


async def _sweep_expired_sessions(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            released = await run_in_threadpool(leases.release_expired)
            if released:
                logger.info("released %d expired session(s)", released)
        except Exception:  # the database may be away: try again next time
            logger.warning("could not release expired sessions", exc_info=True)
