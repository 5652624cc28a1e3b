"""Each server process's webhook sender: it claims due deliveries in short write
transactions and sends them in tasks of its own, never holding a database connection while
a receiver answers (see models.webhooks for the outbox and its claims).

A busy sender settles in rounds: one write transaction records every attempt that ended
since the last and claims what is due into the slots they freed (`webhooks.settle`), so an
endpoint's backlog drains at the speed its concurrency and its receiver allow, at one
transaction per round rather than two per attempt. It keeps connections to receivers open
between attempts (`outbound.Clients`).

Concurrency is bounded twice: at most an endpoint's window of attempts to it at once per
process (counted until the attempt is recorded; the window adapts to how the receiver
answers, up to `webhook_endpoint_concurrency`: web.delivery_windows), and at most
`MAX_IN_FLIGHT` in all, so that a slow receiver holds up neither other endpoints nor the
API's database pool.
Tenants are served round-robin: each claim gives every endpoint with due deliveries one slot
in turn, each up to its free slots (models.webhooks `_claim_due`), so no backlog hides
another tenant's event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sessions_api.core import db_threads, outbound, settings
from sessions_api.models import webhook_delivery, webhooks
from sessions_api.web.delivery_windows import DeliveryWindows

logger = logging.getLogger(__name__)
MAX_IN_FLIGHT = 64
# How long a sender woken by a request's write waits before it claims, so that one claim
# takes what the requests of that moment wrote (an ended attempt does not wait).
_COALESCE_SECONDS = 0.05


class WebhookSender:
    def __init__(self) -> None:
        # Attempts claimed and not yet recorded, per endpoint.
        self._in_flight: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Attempts made and not yet recorded.
        self._ended: list[tuple[webhooks.Claim, outbound.AttemptResult]] = []
        # Set when an attempt ends or a request may have written deliveries.
        self._wake = asyncio.Event()
        self._clients = outbound.Clients()
        # The endpoints whose windows held back due deliveries at the last claim.
        self._held_back: frozenset[uuid.UUID] = frozenset()
        config = settings.current()
        self.windows = DeliveryWindows(config.webhook_endpoint_concurrency, config.webhook_slow_answer_seconds)

    async def run(self) -> None:
        """Settle for as long as the process serves: again at once while attempts end, and
        otherwise when woken or every poll interval."""
        config = settings.current()
        try:
            while True:
                self._wake.clear()
                try:
                    await self.settle()
                except Exception:  # the database may be away: try again next time
                    logger.warning("could not settle webhook deliveries", exc_info=True)
                if self._ended:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), config.webhook_poll_seconds)
                except TimeoutError:
                    continue
                if not self._ended:  # woken by a request's write: let that moment's writes join
                    await asyncio.sleep(_COALESCE_SECONDS)
        finally:
            await self._clients.aclose()

    async def settle(self) -> int:
        """Record the attempts that ended and claim what is due into the free slots; how many
        were claimed. Attempts that cannot be recorded are dropped: their claims run out and
        they are made again (at least once, never lost)."""
        ended, self._ended = self._ended, []
        busy = dict(self._in_flight)
        for claim, _ in ended:
            busy[claim.endpoint_id] -= 1
        room = MAX_IN_FLIGHT - len(self._tasks)
        try:
            if not ended and (room <= 0 or not await db_threads.read(webhooks.any_due)):
                return 0
            claimed = await db_threads.write(webhooks.settle, ended, room, busy, self.windows.slots())
        finally:
            self._free(ended)
        self._held_back = claimed.held_back
        for claim in claimed.claims:
            self._in_flight[claim.endpoint_id] = self._in_flight.get(claim.endpoint_id, 0) + 1
            task = asyncio.get_running_loop().create_task(self._attempt(claim))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed.claims)

    async def _attempt(self, claim: webhooks.Claim) -> None:
        try:
            result = await webhook_delivery.attempt(claim, self._clients)
        except Exception:  # an error of ours, not the receiver's: the claim runs out, it is retried
            logger.warning("could not make the webhook attempt for delivery %s", claim.delivery_id, exc_info=True)
            self._free([(claim, None)])
        else:
            self.windows.note(claim.endpoint_id, result, limited=claim.endpoint_id in self._held_back)
            self._ended.append((claim, result))
        self._wake.set()

    def _free(self, attempts: list[tuple[webhooks.Claim, Any]]) -> None:
        for claim, _ in attempts:
            left = self._in_flight[claim.endpoint_id] - 1
            if left:
                self._in_flight[claim.endpoint_id] = left
            else:
                del self._in_flight[claim.endpoint_id]

    def nudge(self) -> None:
        """Look for due deliveries now (a request of this process may have written some)."""
        self._wake.set()

    def stop(self) -> None:
        """Cancel the attempts in flight (their claims run out; other processes retry them)."""
        for task in self._tasks:
            task.cancel()
