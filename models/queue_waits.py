"""Long-polls on session requests (`Prefer: wait`), woken by one notifier per process.

A waiting request holds no database connection and reads nothing while it waits: it is woken
when its session request leaves the queue. Who wakes it:
- a change committed by any process on PostgreSQL: its NOTIFY (`notify_left_queue`, in the
  transaction of the change) reaches this process's one LISTEN connection (`serve`);
- otherwise (SQLite, or while that connection is down): one check every
  `long_poll_check_seconds` for all of this process's waiting requests at once, in one read,
  run only while some request waits; a change made in this process asks for it at once
  (`check_now`).

Waits are capped, since each holds a connection to the client: at most `max_waits_per_key`
per API key and `max_waits_per_organization` per organization at once in a process, past
which `429 too_many_waits` (streams of events count in the same budget: `models.event_streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection, select
from sqlmodel import col

from sessions_api.core import db, notifications, settings
from sessions_api.core.concurrency import ConcurrencyCap
from sessions_api.models.api_keys import Principal
from sessions_api.models.errors import Throttled
from sessions_api.models.tables import SessionRequest, SessionRequestStatus

CHANNEL = "sessions_api_session_requests"
logger = logging.getLogger(__name__)
# A client told `too_many_waits` may try again this many seconds later.
RETRY_AFTER_SECONDS = 1
KEY_SETTING, ORGANIZATION_SETTING = "SESSIONS_API_MAX_WAITS_PER_KEY", "SESSIONS_API_MAX_WAITS_PER_ORGANIZATION"


@dataclass
class _Waits:
    """This process's waiting requests (in `Database.state`, per event loop) and their caps."""

    loop: asyncio.AbstractEventLoop
    by_key: ConcurrencyCap
    by_organization: ConcurrencyCap
    waiters: dict[uuid.UUID, set[asyncio.Event]] = field(default_factory=dict)
    check_soon: asyncio.Event = field(default_factory=asyncio.Event)
    checker: asyncio.Task[None] | None = None
    listening: bool = False

    def wake(self, request_ids: Iterable[uuid.UUID]) -> None:
        for request_id in request_ids:
            for event in self.waiters.get(request_id, ()):
                event.set()


def _waits() -> _Waits:
    state = db.current().state
    loop = asyncio.get_running_loop()
    known: _Waits | None = state.get(__name__)
    if known is None or known.loop is not loop:  # a registry belongs to the loop that made it
        config = settings.current()
        known = state[__name__] = _Waits(
            loop,
            ConcurrencyCap(config.max_waits_per_key, functools.partial(_too_many, "API key", KEY_SETTING)),
            ConcurrencyCap(
                config.max_waits_per_organization, functools.partial(_too_many, "organization", ORGANIZATION_SETTING)
            ),
        )
    return known


@contextlib.contextmanager
def admitted(caller: Principal) -> Iterator[None]:
    """Count one wait (a long-poll, or a stream of events) against the caller's key and
    organization for as long as it lasts; 429 `too_many_waits` past either cap."""
    waits = _waits()
    with waits.by_key.admit(caller.key_id), waits.by_organization.admit(caller.organization_id):
        yield


async def until_left_queue(caller: Principal, request_id: uuid.UUID, seconds: float) -> None:
    """Return once the request has left the queue, or after `seconds`; 429 `too_many_waits`
    when the caller's key or organization already waits its most at once."""
    waits = _waits()
    with admitted(caller):
        woken = asyncio.Event()
        waits.waiters.setdefault(request_id, set()).add(woken)
        _ensure_checker(waits)
        waits.check_soon.set()  # it may have left the queue since the caller read it
        try:
            await asyncio.wait_for(woken.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            waiting = waits.waiters[request_id]
            waiting.discard(woken)
            if not waiting:
                del waits.waiters[request_id]
            if not waits.waiters:
                waits.check_soon.set()  # the checker ends


def _too_many(whose: str, setting: str, most: int) -> Throttled:
    return Throttled(
        "too_many_waits",
        f"This {whose} already has {most} requests waiting (`Prefer: wait`, or streams of events) on this "
        f"server, the most it may ({setting}); wait for one to end, or ask without waiting.",
        RETRY_AFTER_SECONDS,
    )


def check_now() -> None:
    """A change in this process may have ended some waits: look at once (no-op with none)."""
    waits = _waits()
    if waits.waiters:
        waits.check_soon.set()


def _ensure_checker(waits: _Waits) -> None:
    if waits.checker is None or waits.checker.done():
        waits.checker = waits.loop.create_task(_check(waits))


async def _check(waits: _Waits) -> None:
    """While requests wait: one read for all of them each check interval (or when asked), and
    wake those that left the queue. Listening on PostgreSQL, only when asked."""
    # Imported here: db_threads imports the metrics, and `serve` must set up their
    # multiprocess directory before prometheus-client is first imported.
    from sessions_api.core import db_threads

    interval = settings.current().long_poll_check_seconds
    while waits.waiters:
        try:
            await asyncio.wait_for(waits.check_soon.wait(), None if waits.listening else interval)
        except TimeoutError:
            pass
        waits.check_soon.clear()
        waited = list(waits.waiters)
        if not waited:
            continue
        try:
            queued = await db_threads.read(_still_queued, waited)
        except Exception:  # the database may be away: the waits go on, and so do the checks
            logger.warning("could not check the waiting session requests", exc_info=True)
            await asyncio.sleep(interval)
            continue
        waits.wake(request_id for request_id in waited if request_id not in queued)


def _still_queued(request_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    with db.reading() as conn:
        rows = conn.execute(
            select(col(SessionRequest.id)).where(
                col(SessionRequest.id).in_(request_ids), col(SessionRequest.status) == SessionRequestStatus.queued
            )
        )
        return set(rows.scalars())


def notify_left_queue(*, conn: Connection, request_ids: Iterable[uuid.UUID]) -> None:
    """Wake, once `conn`'s transaction commits, whoever waits on these requests in any process
    (PostgreSQL; elsewhere the checks see it)."""
    notifications.notify(conn=conn, channel=CHANNEL, payloads=(str(request_id) for request_id in request_ids))


def listener() -> tuple[Callable[[str], None], Callable[[bool], None]]:
    """What this process's LISTEN connection calls: for a notification on CHANNEL, and when it
    starts or stops listening (web.lifespan runs the one connection)."""
    waits = _waits()

    def on_payload(payload: str) -> None:
        try:
            waits.wake([uuid.UUID(payload)])
        except ValueError:
            return

    def on_listening(listening: bool) -> None:
        waits.listening = listening
        waits.check_soon.set()  # a check now: a change may have passed unheard

    return on_payload, on_listening
