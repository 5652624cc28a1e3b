"""How many attempts a process makes to one webhook endpoint at once: a window per endpoint
that adapts to how the receiver answers (additive increase, multiplicative decrease).

A window starts at `INITIAL` attempts. While the receiver answers 2xx within
`SESSIONS_API_WEBHOOK_SLOW_ANSWER_SECONDS` and the window is what holds attempts back (the
last claim left deliveries of the endpoint due for want of a slot), it doubles each time a
window's worth of attempts succeeds (a slow start), and once it has shrunk, grows by one
instead. A window that holds nothing back does not grow: an endpoint with a few events a
second keeps a few connections open. A slow answer, a time-out, a refused or failed
connection, a 5xx or a 429 halves it (once per round trip: attempts that began before the
last halving do not halve it again), never below one. A 429 or 503 with `Retry-After` also
gives the endpoint no attempt until then (the delivery itself waits as long:
models.webhooks). Other failures (a 4xx, a name that does not resolve, an unsafe target) say
nothing of the receiver's load and leave it as it is.

`SESSIONS_API_WEBHOOK_ENDPOINT_CONCURRENCY` is the ceiling. Windows are per process, like the
attempts they bound; one unused for an hour is forgotten.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sessions_api.core.outbound import AttemptResult, Reason
from sessions_api.models.webhooks import Slots

# Attempts at once to an endpoint this process has not heard from yet (or has forgotten).
INITIAL = 4
# A window unused this long is forgotten (the endpoint starts again at INITIAL).
_FORGET_AFTER_SECONDS = 3600.0
# Failures that say the receiver, or the way to it, is overloaded.
_OVERLOAD_ERRORS = frozenset({Reason.TIMEOUT, Reason.CONNECTION_REFUSED, Reason.CONNECTION_FAILED})


@dataclass
class _Window:
    size: int
    # Successes since the window last grew.
    successes: int = 0
    # Doubling until the first halving.
    slow_start: bool = True
    last_halved: float = float("-inf")
    paused_until: float = float("-inf")
    last_used: float = 0.0


class DeliveryWindows:
    def __init__(self, ceiling: int, slow_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ceiling = ceiling
        self._slow_ms = slow_seconds * 1000
        self._clock = clock
        self._windows: dict[uuid.UUID, _Window] = {}

    def slots(self) -> Slots:
        """Each endpoint's attempts at once now: its window, 0 while it asked to wait."""
        now = self._clock()
        self._forget_unused(now)
        limits = {
            endpoint_id: 0 if window.paused_until > now else window.size
            for endpoint_id, window in self._windows.items()
        }
        return Slots(limits, min(INITIAL, self._ceiling))

    def note(self, endpoint_id: uuid.UUID, result: AttemptResult, *, limited: bool) -> None:
        """Adapt the endpoint's window to what one attempt gave; `limited`: the window held
        back deliveries already due."""
        now = self._clock()
        window = self._windows.get(endpoint_id)
        if window is None:
            window = self._windows[endpoint_id] = _Window(min(INITIAL, self._ceiling))
        window.last_used = now
        if result.retry_after is not None:
            window.paused_until = max(window.paused_until, now + result.retry_after)
        if self._overloaded(result):
            began = now - result.duration_ms / 1000
            if began >= window.last_halved:  # one halving per round trip
                window.size = max(1, window.size // 2)
                window.successes, window.slow_start, window.last_halved = 0, False, now
        elif result.succeeded and limited:
            window.successes += 1
            if window.successes >= window.size:
                grown = window.size * 2 if window.slow_start else window.size + 1
                window.size, window.successes = min(self._ceiling, grown), 0

    def size(self, endpoint_id: uuid.UUID) -> int:
        """The endpoint's window (INITIAL for one not heard from)."""
        window = self._windows.get(endpoint_id)
        return window.size if window is not None else min(INITIAL, self._ceiling)

    def _overloaded(self, result: AttemptResult) -> bool:
        if result.error in _OVERLOAD_ERRORS:
            return True
        status = result.response_status
        if status is not None and (status == 429 or status >= 500):
            return True
        return result.succeeded and result.duration_ms > self._slow_ms

    def _forget_unused(self, now: float) -> None:
        stale = [
            endpoint_id
            for endpoint_id, window in self._windows.items()
            if now - window.last_used > _FORGET_AFTER_SECONDS and window.paused_until <= now
        ]
        for endpoint_id in stale:
            del self._windows[endpoint_id]
