"""Each server process's webhook sender: it claims due deliveries in short write
transactions and sends them in tasks of its own, never holding a database connection while
a receiver answers (see models.webhooks for the outbox and its claims). It claims again as
soon as an attempt ends, so an endpoint's backlog drains at the speed its concurrency and its
receiver allow, not one claim per poll interval.

Concurrency is bounded twice: at most `webhook_endpoint_concurrency` attempts to one endpoint
at once per process, and at most `MAX_IN_FLIGHT` in all, so that a slow receiver holds up
neither other endpoints nor the API's database pool.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sessions_api.core import db_threads, settings
from sessions_api.models import webhook_delivery, webhooks

logger = logging.getLogger(__name__)
MAX_IN_FLIGHT = 64
# How long a woken sender waits before it claims, so that one claim takes what came together.
_COALESCE_SECONDS = 0.05


class WebhookSender:
    def __init__(self) -> None:
        self._in_flight: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set when an attempt ends (its slot is free) or a request may have written deliveries:
        # more may be due at once.
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        """Claim due deliveries for as long as the process serves: again at once while claims
        fill the free slots, again as soon as an attempt frees a slot, and otherwise every poll
        interval. A busy endpoint's deliveries go out as fast as its concurrency allows, not
        one batch per poll."""
        config = settings.current()
        while True:
            self._slot_freed.clear()
            try:
                claimed = await self.dispatch_due(config.webhook_endpoint_concurrency)
            except Exception:  # the database may be away: try again next time
                logger.warning("could not claim webhook deliveries", exc_info=True)
                claimed = 0
            if claimed:
                continue
            try:
                await asyncio.wait_for(self._slot_freed.wait(), config.webhook_poll_seconds)
            except TimeoutError:
                continue
            # Woken: let what else ends or is written in the next moment join one claim, rather
            # than a write transaction per delivery competing with the API's own writes.
            await asyncio.sleep(_COALESCE_SECONDS)

    async def dispatch_due(self, per_endpoint: int) -> int:
        """Claim what is due (within the bounds) and start sending it; how many were claimed."""
        room = MAX_IN_FLIGHT - len(self._tasks)
        if room <= 0 or not await db_threads.read(webhooks.any_due):
            return 0
        claims = await db_threads.write(webhooks.claim_due, room, dict(self._in_flight), per_endpoint)
        for claim in claims:
            self._in_flight[claim.endpoint_id] = self._in_flight.get(claim.endpoint_id, 0) + 1
            task = asyncio.get_running_loop().create_task(self._deliver(claim))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claims)

    async def _deliver(self, claim: webhooks.Claim) -> None:
        try:
            await webhook_delivery.deliver(claim)
        except Exception:  # not recorded: the claim runs out and the attempt is made again
            logger.warning("could not record a webhook attempt for delivery %s", claim.delivery_id, exc_info=True)
        finally:
            left = self._in_flight[claim.endpoint_id] - 1
            if left:
                self._in_flight[claim.endpoint_id] = left
            else:
                del self._in_flight[claim.endpoint_id]
            self._slot_freed.set()

    def nudge(self) -> None:
        """Look for due deliveries now (a request of this process may have written some)."""
        self._slot_freed.set()

    def stop(self) -> None:
        """Cancel the attempts in flight (their claims run out; other processes retry them)."""
        for task in self._tasks:
            task.cancel()
