"""How many things one holder (an organization, an API key) runs at once in this process: the
cap on heavy reads per organization (core.heavy_reads) and on long-polls per key and per
organization (models.queue_waits) are each one `ConcurrencyCap`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager


class ConcurrencyCap:
    """At most `most` at once per holder; past it, `refusal(most)` is raised. Only the event
    loop calls it, so it needs no lock."""

    def __init__(self, most: int, refusal: Callable[[int], Exception]) -> None:
        self.most = most
        self._refusal = refusal
        self._running: dict[Hashable, int] = {}

    @contextmanager
    def admit(self, holder: Hashable) -> Iterator[None]:
        """Count one for `holder` while the context runs, or refuse when it already runs `most`."""
        running = self._running.get(holder, 0)
        if running >= self.most:
            raise self._refusal(self.most)
        self._running[holder] = running + 1
        try:
            yield
        finally:
            left = self._running[holder] - 1
            if left:
                self._running[holder] = left
            else:
                del self._running[holder]
