"""What each server process runs besides requests: the expiry sweep (with what else ends:
artifacts past their retention, abandoned uploads, orphaned objects), the webhook sender, the
queue server and (on PostgreSQL) the LISTEN connection that wakes long-polls.

Each serves tenants by a rule (docs/contributors/security.md): the sweeps take every tenant's
expired rows alike, oldest first, in bounded batches; the sender claims round-robin over
endpoints; the queue serves the organization holding the fewest live sessions first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sessions_api.core import compiled_reads, db, db_threads, heavy_reads, notifications
from sessions_api.core.metrics import ARTIFACTS_ENDED, EXPIRED_SESSIONS_RELEASED, EXPIRY_SWEEPS
from sessions_api.models import event_streams, events, leases, queue_waits, schema_version, webhooks
from sessions_api.models.artifacts import retention
from sessions_api.web.queue import QueueServer
from sessions_api.web.state import AppState
from sessions_api.web.webhooks import WebhookSender

logger = logging.getLogger(__name__)
# How long a stopping process waits for the best-effort writes it started (keys' last use).
_DRAIN_SECONDS = 2.0
# The most the count of unreadable signing secrets at start may take (it reads every endpoint).
_COUNT_SECRETS_SECONDS = 10.0


def lifespan(state: AppState) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The lifespan of the app that owns `state`: its background work runs bound to its database."""

    @asynccontextmanager
    async def serving(_app: Any) -> AsyncIterator[None]:
        """Releases expired sessions every few seconds, whether or not anyone calls the API, and
        delivers the webhooks' outbox."""
        with db.bound(state.database):
            await compiled_reads.open_pool(state.database)
            await _report_unreadable_secrets()
            sweeper = asyncio.create_task(_sweep_expired_sessions(state))
            statistics = (
                asyncio.create_task(_refresh_statistics(state.settings.statistics_refresh_seconds))
                if state.settings.is_sqlite
                else None
            )
            webhook_sender = state.webhook_sender = WebhookSender()
            dispatching = asyncio.create_task(webhook_sender.run())

            def on_queue_change() -> None:  # events to send, long-polls and streams to wake
                webhook_sender.nudge()
                queue_waits.check_now()
                event_streams.check_now()

            queue_server = state.queue_server = QueueServer(on_change=on_queue_change)
            serving_queue = asyncio.create_task(queue_server.run())
            listening = asyncio.create_task(_listen(state))
            background = [
                task for task in (sweeper, statistics, dispatching, serving_queue, listening) if task is not None
            ]
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                state.queue_server = None
                webhook_sender.stop()
                state.webhook_sender = None
                # A task cancelled while its database call runs on a thread stops when the call
                # returns: wait for that, so that no transaction outlives the app's database.
                await asyncio.wait(background, timeout=_DRAIN_SECONDS)
                await db_threads.drain(timeout=_DRAIN_SECONDS)
                await compiled_reads.close_pool(state.database)
                state.database.dispose()

    return serving


async def _listen(state: AppState) -> None:
    """One LISTEN connection per process (PostgreSQL), for as long as the app serves: it wakes
    long-polls and event streams when another process commits, and the queue server and the
    webhook sender when another process wrote events (a device freed, deliveries to send)."""
    database = db.current()
    if database.settings.is_sqlite:
        return
    on_request, on_requests_listening = queue_waits.listener()
    on_events, on_events_listening = event_streams.listener()

    def on_event(payload: str) -> None:
        on_events(payload)
        if state.queue_server is not None:
            state.queue_server.nudge()
        if state.webhook_sender is not None:
            state.webhook_sender.nudge()

    def on_listening(listening: bool) -> None:
        on_requests_listening(listening)
        on_events_listening(listening)

    channels = {queue_waits.CHANNEL: on_request, events.CHANNEL: on_event}
    await notifications.listen(database, channels, on_listening)


async def _report_unreadable_secrets() -> None:
    """Say at start how many stored signing secrets this server cannot unseal: a rotation run
    before this server was given the new key (docs/operators/deploy.md gives the order)."""
    try:
        with heavy_reads.time_limited(_COUNT_SECRETS_SECONDS):
            unreadable = await db_threads.read(webhooks.count_unreadable_secrets)
    except Exception:  # the database may be away at start: /readyz counts again later
        logger.warning("could not count the webhook signing secrets this server can unseal", exc_info=True)
        return
    if unreadable:
        logger.error(
            "%d stored webhook signing secrets cannot be unsealed with SESSIONS_API_SECRET_KEYS: their "
            "endpoints' deliveries fail with secret_unreadable until this server has the key that sealed them",
            unreadable,
        )
    else:
        logger.info("every stored webhook signing secret can be unsealed with this server's keys")


async def _sweep_expired_sessions(state: AppState) -> None:
    orphans = _OrphanSweep()
    while True:
        await asyncio.sleep(state.settings.expiry_sweep_seconds)
        try:
            released = await db_threads.write(leases.release_expired)
        except Exception:  # the database may be away: try again next time
            logger.warning("could not release expired sessions", exc_info=True)
            continue
        EXPIRY_SWEEPS.inc()
        EXPIRED_SESSIONS_RELEASED.inc(released)
        if released:
            logger.info("released %d expired session(s)", released)
            if state.queue_server is not None:
                state.queue_server.nudge()  # their devices are free
        await _sweep_what_has_ended(orphans)


async def _sweep_what_has_ended(orphans: _OrphanSweep) -> None:
    """Idempotency records past their 24 hours; rotated signing secrets past their overlap;
    events past their retention;
    artifacts past their retention, uploads never completed, and one bounded page of the
    artifact store's objects looked at for orphans (the next sweep goes on from there)."""
    sweeps = (
        leases.sweep_idempotency_records,
        webhooks.erase_ended_rotations,
        events.sweep_expired,
        _expire_artifacts,
        _fail_abandoned_uploads,
        orphans.next_pass,
    )
    for sweep in sweeps:
        try:
            await db_threads.write(sweep)
        except Exception:  # the database or the store may be away: try again next time
            logger.warning("could not run %s", sweep.__name__, exc_info=True)


def _expire_artifacts() -> None:
    ARTIFACTS_ENDED.labels("expired").inc(retention.expire_artifacts())


def _fail_abandoned_uploads() -> None:
    ARTIFACTS_ENDED.labels("failed").inc(retention.fail_abandoned_uploads())


class _OrphanSweep:
    """One page of the artifact store per sweep, each going on where the last one stopped."""

    def __init__(self) -> None:
        self.after = ""  # from the start

    def next_pass(self) -> None:
        done = retention.sweep_orphans(self.after)
        self.after = done.after
        ARTIFACTS_ENDED.labels("orphan_removed").inc(done.removed)
        if done.removed:
            logger.info("removed %d orphaned artifact object(s)", done.removed)


async def _refresh_statistics(interval: float) -> None:
    """SQLite's planner statistics, gathered at start and every `interval` seconds."""
    while True:
        try:
            await db_threads.write(schema_version.refresh_statistics_now)
        except Exception:  # the database may be busy or away: try again next time
            logger.warning("could not refresh the query planner's statistics", exc_info=True)
        await asyncio.sleep(interval)
