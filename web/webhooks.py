"""Each server process's webhook sender: it claims due deliveries in short write
transactions and sends them in tasks of its own, never holding a database connection while
a receiver answers (see models.webhooks for the outbox and its claims).

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


class WebhookSender:
    def __init__(self) -> None:
        self._in_flight: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        """Look for due deliveries every poll interval, for as long as the process serves."""
        config = settings.current()
        while True:
            try:
                await self.dispatch_due(config.webhook_endpoint_concurrency)
            except Exception:  # the database may be away: try again next time
                logger.warning("could not claim webhook deliveries", exc_info=True)
            await asyncio.sleep(config.webhook_poll_seconds)

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

    def stop(self) -> None:
        """Cancel the attempts in flight (their claims run out; other processes retry them)."""
        for task in self._tasks:
            task.cancel()
