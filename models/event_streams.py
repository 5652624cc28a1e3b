"""Streams of events (listEvents as Server-Sent Events), woken by one notifier per process.

A stream holds no database connection while it waits. It is woken when its organization has
new events:
- on PostgreSQL, by the NOTIFY each event's transaction sends as it commits
  (`models.events.append`), which reaches this process's one LISTEN connection (web.lifespan);
- otherwise (SQLite, or while that connection is down), by one read per check interval
  (`long_poll_check_seconds`) for every organization this process streams, run only while
  some stream is open; a change made in this process asks for it at once (`check_now`).

A stream counts in the wait budget of long-polls (`models.queue_waits.admitted`), and ends
within `_GRANT_CHECK_SECONDS` (2 s at most) of its grant ending: its key revoked or expired,
its member removed or given another role. One read per process checks every stream's grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, tuple_
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.timestamps import parse_rfc3339, utcnow
from sessions_api.models import events, queue_waits
from sessions_api.models.api_keys import Principal
from sessions_api.models.tables import ApiKey, Membership

logger = logging.getLogger(__name__)
# How often every open stream's grant is checked (its key, its membership), in one read.
_GRANT_CHECK_SECONDS = 1.0
# Events a stream reads at once.
_BATCH = 500


@dataclass(eq=False)
class Stream:
    caller: Principal
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False  # its grant ended
    _admission: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@dataclass
class _Streams:
    """This process's open streams (in `Database.state`, per event loop)."""

    loop: asyncio.AbstractEventLoop
    by_organization: dict[uuid.UUID, set[Stream]] = field(default_factory=dict)
    newest: dict[uuid.UUID, datetime] = field(default_factory=dict)
    check_soon: asyncio.Event = field(default_factory=asyncio.Event)
    checker: asyncio.Task[None] | None = None
    listening: bool = False

    def wake(self, organization_id: uuid.UUID) -> None:
        for stream in self.by_organization.get(organization_id, ()):
            stream.woken.set()


def _streams() -> _Streams:
    state = db.current().state
    loop = asyncio.get_running_loop()
    known: _Streams | None = state.get(__name__)
    if known is None or known.loop is not loop:
        known = state[__name__] = _Streams(loop)
    return known


def open_stream(caller: Principal) -> Stream:
    """Admit a stream of the caller's organization (429 `too_many_waits` past the wait budget)
    and register it to be woken; `follow` closes it."""
    stream = Stream(caller)
    stream._admission.enter_context(queue_waits.admitted(caller))
    streams = _streams()
    streams.by_organization.setdefault(caller.organization_id, set()).add(stream)
    if streams.checker is None or streams.checker.done():
        streams.checker = streams.loop.create_task(_check(streams))
    return stream


def _close(stream: Stream) -> None:
    streams = _streams()
    organization_id = stream.caller.organization_id
    open_ones = streams.by_organization.get(organization_id, set())
    open_ones.discard(stream)
    if not open_ones:
        streams.by_organization.pop(organization_id, None)
        streams.newest.pop(organization_id, None)
    stream._admission.close()


async def follow(
    stream: Stream,
    position: datetime,
    *,
    types: Sequence[str],
    session_id: uuid.UUID | None,
    heartbeat_seconds: float,
    until: float,
) -> AsyncIterator[Row[Any] | None]:
    """The organization's events after `position`, in order, as they are written; None when a
    heartbeat is due. Ends at `until` (time.monotonic()) or when the stream's grant ends."""
    from sessions_api.core import db_threads  # imported here: it imports the metrics (see queue_waits)

    caller = stream.caller
    admin = caller.role.value == "admin"
    beat = time.monotonic() + heartbeat_seconds
    try:
        while time.monotonic() < until and not stream.ended:
            stream.woken.clear()
            rows = await db_threads.read(
                events.after, caller.organization_id, position, _BATCH, admin=admin, types=types, session_id=session_id
            )
            for row in rows:
                yield row
                position = parse_rfc3339(row.created_at)
            if len(rows) == _BATCH:
                continue
            wait = min(beat, until) - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream.woken.wait(), wait)
            if time.monotonic() >= beat:
                yield None
                beat = time.monotonic() + heartbeat_seconds
    finally:
        _close(stream)


def check_now() -> None:
    """A change in this process may have written events: look at once (no-op with no stream)."""
    streams = _streams()
    if streams.by_organization:
        streams.check_soon.set()


async def _check(streams: _Streams) -> None:
    """While streams are open: every check interval (or when asked) one read of the newest
    event of each streamed organization, unless LISTEN says; every second, one read of their
    grants."""
    from sessions_api.core import db_threads

    interval = settings.current().long_poll_check_seconds
    granted_at = time.monotonic()
    while streams.by_organization:
        wait = _GRANT_CHECK_SECONDS if streams.listening else min(interval, _GRANT_CHECK_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(streams.check_soon.wait(), wait)
        asked = streams.check_soon.is_set()
        streams.check_soon.clear()
        organizations = list(streams.by_organization)
        try:
            if asked or not streams.listening:
                newest = await db_threads.read(events.newest_of, organizations)
                for organization_id, instant in newest.items():
                    if streams.newest.get(organization_id) != instant:
                        streams.newest[organization_id] = instant
                        streams.wake(organization_id)
            if time.monotonic() - granted_at >= _GRANT_CHECK_SECONDS:
                granted_at = time.monotonic()
                callers = [stream.caller for open_ones in streams.by_organization.values() for stream in open_ones]
                granted = await db_threads.read(_still_granted, callers)
                for open_ones in list(streams.by_organization.values()):
                    for stream in open_ones:
                        if (stream.caller.key_id, stream.caller.organization_id) not in granted:
                            stream.ended = True
                            stream.woken.set()
        except Exception:  # the database may be away: the streams go on, and so do the checks
            logger.warning("could not check the open event streams", exc_info=True)
            await asyncio.sleep(interval)


def _still_granted(callers: Sequence[Principal]) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """(key, organization) of the callers whose key still works and whose membership still has
    the role the stream was opened with."""
    now = utcnow()
    with db.reading() as conn:
        live_keys = set(
            conn.execute(
                select(col(ApiKey.id)).where(
                    col(ApiKey.id).in_({caller.key_id for caller in callers}),
                    col(ApiKey.revoked_at).is_(None),
                    (col(ApiKey.expires_at).is_(None)) | (col(ApiKey.expires_at) > now),
                )
            ).scalars()
        )
        pairs = {(caller.user_id, caller.organization_id) for caller in callers}
        roles = {
            (user_id, organization_id): role
            for user_id, organization_id, role in conn.execute(
                select(col(Membership.user_id), col(Membership.organization_id), col(Membership.role)).where(
                    tuple_(col(Membership.user_id), col(Membership.organization_id)).in_(pairs)
                )
            )
        }
    return {
        (caller.key_id, caller.organization_id)
        for caller in callers
        if caller.key_id in live_keys and roles.get((caller.user_id, caller.organization_id)) == caller.role
    }


def listener() -> tuple[Callable[[str], None], Callable[[bool], None]]:
    """What this process's LISTEN connection calls for a notification on `events.CHANNEL`
    (an organization's id), and when it starts or stops listening."""
    streams = _streams()

    def on_payload(payload: str) -> None:
        try:
            streams.wake(uuid.UUID(payload))
        except ValueError:
            return

    def on_listening(listening: bool) -> None:
        streams.listening = listening
        streams.check_soon.set()

    return on_payload, on_listening
