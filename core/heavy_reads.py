"""Heavy reads: reads whose cost the caller chooses (reports, filters that walk an unbounded
set of rows), as opposed to reads bounded by their page (keyset and limit).

The spec declares each read operation's cost (`x-read-cost`, planned by `web.operations`). A
heavy one never runs on the event loop: it runs on the database threads, at most
`max_heavy_reads_per_organization` at once per organization in a process (a
`core.concurrency.ConcurrencyCap` refusing with `TooManyHeavyReads`),
and within `report_timeout_seconds` (`time_limited`): every connection `core.db` hands out
while the limit is in force stops its statements at the deadline (SQLite's progress handler,
PostgreSQL's `statement_timeout`) and raises `ReadTimeLimitExceeded`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# How many SQLite virtual machine instructions run between two looks at the deadline: often
# enough to stop within a millisecond or so, rarely enough to cost nothing measurable.
SQLITE_PROGRESS_STEPS = 1000

# (monotonic deadline, the limit in seconds) of the heavy read running in this context.
_limit: ContextVar[tuple[float, float] | None] = ContextVar("sessions_api_heavy_read_limit", default=None)


class ReadTimeLimitExceeded(Exception):
    """A heavy read ran past its time limit; the API answers 503 `report_timeout`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"The report took longer than this server's limit of {seconds:g} seconds.")
        self.seconds = seconds


class TooManyHeavyReads(Exception):
    """The organization already runs its budget of heavy reads in this process (429)."""

    def __init__(self, budget: int) -> None:
        super().__init__(
            f"Your organization already runs {budget} reports or heavy filters at once on this server; "
            "retry when one has finished."
        )
        self.budget = budget


@contextmanager
def time_limited(seconds: float) -> Iterator[None]:
    """Every database read in this context (and the threads it hands work to) ends within
    `seconds` from now."""
    token = _limit.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _limit.reset(token)


def deadline() -> float | None:
    """The monotonic instant by which the current heavy read must end; None outside one."""
    limit = _limit.get()
    return None if limit is None else limit[0]


def report_timeout() -> float:
    """The time limit of the current heavy read, in seconds (0 outside one)."""
    limit = _limit.get()
    return 0.0 if limit is None else limit[1]


def is_heavy() -> bool:
    """Whether the current context is a heavy read (its reads then run on threads)."""
    return _limit.get() is not None
