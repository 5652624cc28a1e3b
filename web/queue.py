"""Each server process's queue server: it runs rounds of models.queue_serving, at once when a
request of this process may have freed a device (a write nudges it) and otherwise every
`queue_poll_seconds`, so that a release in another process or host is served within that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sessions_api.core import db_threads, settings
from sessions_api.core.metrics import QUEUE_WAIT
from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.models import queue_serving

logger = logging.getLogger(__name__)


# The operations after which this process serves the queue at once: a start may have queued a
# request (or found a device expired), a release frees a device.
QUEUE_CHANGES = frozenset(
    # A start, a release or a cancel changes what can start; a key revoked, a member removed or
    # demoted ends the grants of their queued starts (models.queue_serving cancels them).
    {"createSession", "releaseSession", "revokeApiKey", "removeMember", "changeMemberRole", "cancelSessionRequest"}
)


class QueueServer:
    def __init__(self, on_change: Callable[[], None]) -> None:
        # Set when a request of this process may have freed a device.
        self._wake = asyncio.Event()
        # Called after a round that started, timed out or cancelled requests (their events are in the outbox).
        self._on_change = on_change

    async def run(self) -> None:
        poll = settings.current().queue_poll_seconds
        while True:
            self._wake.clear()
            try:
                done = await db_threads.write(queue_serving.serve)
            except Exception:  # the database may be away: try again next time
                logger.warning("could not serve the queue of session requests", exc_info=True)
            else:
                if done.started or done.timed_out or done.cancelled:
                    self._on_change()
                    _observe_waits(done)
                if len(done.started) + len(done.cancelled) >= queue_serving.MAX_STARTS_PER_ROUND:
                    continue  # more may start at once
            try:
                await asyncio.wait_for(self._wake.wait(), poll)
            except TimeoutError:
                continue

    def nudge(self) -> None:
        """Serve the queue now (a request of this process may have freed a device)."""
        self._wake.set()


def _observe_waits(done: queue_serving.Round) -> None:
    for outcome, views in (("started", done.started), ("timed_out", done.timed_out)):
        for view in views:
            QUEUE_WAIT.labels(outcome).observe(_seconds(view.row.created_at, view.row.ended_at))


def _seconds(start: str, end: str | None) -> float:
    if end is None:
        return 0.0
    waited: datetime = parse_rfc3339(end)
    return max((waited - parse_rfc3339(start)).total_seconds(), 0.0)
