"""Blocking database calls from the event loop: writes on threads of their own; reads on threads
of their own too, except on SQLite, where they run on the event loop itself; heavy reads
(core.heavy_reads: reports, unbounded filters) on threads of their own everywhere.

A write can wait for a lock (SQLite's write lock for the busy timeout, a PostgreSQL row lock
for the lock timeout); a read never does. Reads therefore never share a queue with writes:
a write stuck behind another process's transaction holds up no read of this process.

Why SQLite reads may run on the loop: SQLite works inside this process, and in WAL mode (the
engine sets it) a reader never waits for a lock: it reads the last committed state while a
writer appends to the log. Every read the API makes is short and indexed (a key lookup, a
page of at most 500 rows), so it costs less than handing it to a thread and back (two
thread switches and their GIL hand-offs, measured in BENCHMARKS.md). Anything that can wait
(a write, a lock, the network) never runs on the loop, and neither does a read whose cost the
caller chooses. The pools' sizes are the settings' `read_threads()`, `write_threads()` and
`heavy_read_threads()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from sessions_api.core import db, heavy_reads
from sessions_api.core.metrics import DB_CALLS_IN_USE, DB_CALLS_WAITING

P = ParamSpec("P")
T = TypeVar("T")
logger = logging.getLogger(__name__)


class _Threads:
    """What the bound database keeps of its threads (in `Database.state`)."""

    def __init__(self) -> None:
        # (event loop, limiter) per pool: a limiter belongs to the loop that made it.
        self.limiters: dict[str, tuple[asyncio.AbstractEventLoop, CapacityLimiter]] = {}
        # Calls started with write_soon() and not yet finished, so that their tasks are kept alive.
        self.background: set[asyncio.Task[Any]] = set()


def _threads() -> _Threads:
    state = db.current().state
    threads: _Threads | None = state.get(__name__)
    if threads is None:
        threads = state[__name__] = _Threads()
    return threads


async def read(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a data-layer read: on the loop on SQLite (see above), else on the reads' threads; a
    heavy read (core.heavy_reads) always on the heavy reads' threads."""
    if heavy_reads.is_heavy():
        return await _run("heavy", function, *args, **kwargs)
    if db.current().settings.is_sqlite:
        in_use = DB_CALLS_IN_USE.labels("reads")
        in_use.inc()
        try:
            return function(*args, **kwargs)
        finally:
            in_use.dec()
    return await _run("reads", function, *args, **kwargs)


async def run(function: Callable[..., T], *args: Any, writes: bool, **kwargs: Any) -> T:
    """Run a data-layer call as a write or as a read."""
    if writes:
        return await _run("writes", function, *args, **kwargs)
    return await read(function, *args, **kwargs)


async def write(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a data-layer write on the writes' threads."""
    return await _run("writes", function, *args, **kwargs)


def write_soon(function: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
    """Start a best-effort write without waiting for it; a failure is logged, not raised."""

    async def attempt() -> None:
        try:
            await write(function, *args, **kwargs)
        except Exception:
            logger.debug("a background write failed", exc_info=True)

    background = _threads().background
    task = asyncio.get_running_loop().create_task(attempt())
    background.add(task)
    task.add_done_callback(background.discard)


async def drain(timeout: float) -> None:
    """Wait, at most `timeout` seconds, for the writes started with write_soon() (a process that
    stops finishes them first)."""
    pending = [task for task in _threads().background if task.get_loop() is asyncio.get_running_loop()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


async def _run(pool: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    waiting, in_use = DB_CALLS_WAITING.labels(pool), DB_CALLS_IN_USE.labels(pool)
    started = False

    def call() -> T:
        nonlocal started
        started = True
        waiting.dec()
        in_use.inc()
        try:
            return function(*args, **kwargs)
        finally:
            in_use.dec()

    waiting.inc()
    running = asyncio.ensure_future(anyio.to_thread.run_sync(call, limiter=_limiter(pool)))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        # Nothing stops a call running on its thread: its cancelled caller waits for it to
        # return, so that no transaction outlives the task that started it (an app that stops
        # waits for its background work, then disposes of its database).
        if not started:
            running.cancel()
        await asyncio.wait([running])
        raise
    finally:
        if not started:  # cancelled while it waited for a thread
            waiting.dec()


def _limiter(pool: str) -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiters = _threads().limiters
    known = limiters.get(pool)
    if known is None or known[0] is not loop:
        config = db.current().settings
        sizes = {"reads": config.read_threads, "writes": config.write_threads, "heavy": config.heavy_read_threads}
        size = sizes[pool]()
        known = limiters[pool] = (loop, CapacityLimiter(size))
    return known[1]
