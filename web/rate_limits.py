"""Rate limits (OWASP API4), counted by the `limits` library in storage every worker shares.

Five budgets, each in `limits`' notation (`20/second;600/minute`):

- every API key's requests (`SESSIONS_API_RATE_LIMIT`);
- every user's requests, all their keys together (`SESSIONS_API_RATE_LIMIT_PER_USER`), so
  that a user's many keys do not multiply their share;
- every organization's requests, all its members together
  (`SESSIONS_API_RATE_LIMIT_PER_ORGANIZATION`), so that no tenant takes the whole server;
- each organization's session starts, `createSession` (`SESSIONS_API_START_RATE_LIMIT`);
- failed authentications per client address (`SESSIONS_API_AUTH_FAILURE_LIMIT`), counted
  only when one fails: past the budget a failure answers 429, while a valid key from the
  same address is still served (web.security), and callers who never fail cost the
  storage nothing.

Counting is the sliding window counter: one counter per window and key, weighted with the
previous window's, so memory is constant per key (a moving window keeps an entry per hit:
600 per key for `600/minute`) and a burst at a window's edge cannot pass twice the budget
(a fixed window lets it). Storage is `memory://` (one process) or Redis, shared by every
worker and host. If the storage fails, requests are served (fail open): a warning at most
once a minute, `sessions_api_rate_limit_storage_errors_total` counts each failure, and the
storage is left alone for a second so that a dead Redis adds no latency to every request.

Answers carry the IETF HTTPAPI headers of draft-ietf-httpapi-ratelimit-headers-11 for the
policy nearest to running out (the least left of its quota, as a share): `RateLimit-Policy`
(quota `q`, window `w` in seconds) and `RateLimit` (remaining `r`, seconds to its reset `t`),
as structured-field lists; over a budget, 429 `rate_limited` with `Retry-After`, naming it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.types import Message, Scope

from sessions_api.core.metrics import RATE_LIMIT_STORAGE_ERRORS, RATE_LIMITED
from sessions_api.core.settings import Settings
from sessions_api.web.errors import ApiError

logger = logging.getLogger(__name__)
# Where the security handler leaves the request's budgets for the headers (the extensions
# dict is shared by every copy Connexion makes of the scope).
STATE = "sessions_api.rate_limit"
_QUIET_AFTER_FAILURE_SECONDS = 1.0
_WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Budget:
    """One named budget: its limits, from the shortest window to the longest."""

    name: str
    limits: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, name: str, notation: str) -> Budget:
        items = sorted(parse_many(notation), key=lambda item: item.get_expiry())
        return cls(name, tuple(items))

    def policy(self, item: RateLimitItem) -> str:
        """The policy's name in the headers: the budget and the window (`key-60s`)."""
        return f"{self.name}-{item.get_expiry()}s"


@dataclass
class Spent:
    """What a request has used of its budgets: (policy, quota, window, remaining, reset in)."""

    policies: list[tuple[str, int, int, int, int]] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        """The headers of the policy nearest to running out (the first such, on a tie)."""
        if not self.policies:
            return {}
        name, quota, window, left, reset = min(self.policies, key=lambda policy: policy[3] / policy[1])
        return {"RateLimit-Policy": f'"{name}";q={quota};w={window}', "RateLimit": f'"{name}";r={left};t={reset}'}


class RateLimits:
    """The process's budgets and their storage (one per event loop: async clients are)."""

    def __init__(self, settings: Settings) -> None:
        self.key = _budget("key", settings.rate_limit)
        self.user = _budget("user", settings.rate_limit_per_user)
        self.organization = _budget("organization", settings.rate_limit_per_organization)
        self.start = _budget("start", settings.start_rate_limit)
        self.auth_failures = _budget("auth-failures", settings.auth_failure_limit)
        # limits' asyncio storages, in memory too: its synchronous memory storage expires keys
        # on a thread it starts every 10 ms under load (a large share of a getSession's CPU);
        # the asyncio one, on a task of the loop.
        self._uri = _async_uri(settings.rate_limit_storage)
        self._options: dict[str, Any] = {}
        if not settings.rate_limit_storage.startswith("memory://"):
            timeout = settings.rate_limit_storage_timeout_ms / 1000
            # redis-py with hiredis: less CPU per command than coredis.
            self._options = {
                "implementation": "redispy",
                "key_prefix": settings.rate_limit_key_prefix,
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
            }
        self._limiters: dict[asyncio.AbstractEventLoop, SlidingWindowCounterRateLimiter] = {}
        self._quiet_until = 0.0
        self._warned_at = -math.inf

    async def count_failure(self, address: str, spent: Spent) -> None:
        """Count a failed authentication from `address` (429 once it is over the budget)."""
        await self.spend(self.auth_failures, address, spent)

    async def spend(self, budget: Budget | None, identity: str, spent: Spent) -> None:
        """Count one request against `budget` for `identity`, noting what is left in `spent`;
        ApiError 429 when it is over (then nothing more is counted)."""
        if budget is None:
            return
        limiter = self._limiter()
        if limiter is None:
            return
        try:
            for item in budget.limits:
                if not await limiter.hit(item, budget.name, identity):
                    reset = await _seconds_to_reset(limiter, item, budget.name, identity)
                    RATE_LIMITED.labels(budget.name).inc()
                    raise _over_budget(budget, item, reset, spent)
            for item in budget.limits:
                stats = await limiter.get_window_stats(item, budget.name, identity)
                spent.policies.append(_policy(budget, item, stats.remaining, stats.reset_time))
        except ApiError:
            raise
        except Exception as exc:
            self._storage_failed(exc)

    def _limiter(self) -> SlidingWindowCounterRateLimiter | None:
        if time.monotonic() < self._quiet_until:
            return None
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = SlidingWindowCounterRateLimiter(storage_from_string(self._uri, **self._options))
            self._limiters = {loop: limiter}
        return limiter

    def _storage_failed(self, exc: Exception) -> None:
        RATE_LIMIT_STORAGE_ERRORS.inc()
        now = time.monotonic()
        self._quiet_until = now + _QUIET_AFTER_FAILURE_SECONDS
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning("rate limits: the storage failed (%s); serving without limits until it is back", exc)


def _budget(name: str, notation: str) -> Budget | None:
    return None if notation.strip().lower() == "off" else Budget.parse(name, notation)


def _async_uri(uri: str) -> str:
    """`limits`' asyncio storage for a URI in its plain form (`redis://` -> `async+redis://`, `memory://` -> `async+memory://`)."""
    return uri if uri.startswith("async+") else f"async+{uri}"


async def _seconds_to_reset(limiter: SlidingWindowCounterRateLimiter, item: RateLimitItem, *keys: str) -> int:
    stats = await limiter.get_window_stats(item, *keys)
    return max(1, math.ceil(stats.reset_time - time.time()))


def _policy(budget: Budget, item: RateLimitItem, remaining: int, reset_time: float) -> tuple[str, int, int, int, int]:
    reset = max(0, math.ceil(reset_time - time.time()))
    return budget.policy(item), item.amount, item.get_expiry(), remaining, reset


def _over_budget(budget: Budget, item: RateLimitItem, reset: int, spent: Spent) -> ApiError:
    what = {
        "key": "this API key",
        "user": "your requests with all your API keys",
        "organization": "the requests of this organization",
        "start": "session starts of this organization",
        "auth-failures": "failed authentications from your address",
    }[budget.name]
    spent.policies.append(_policy(budget, item, 0, time.time() + reset))
    return ApiError(
        429,
        f"Too many requests: the limit of {item} for {what} is reached; retry in {reset} seconds.",
        "rate_limited",
        {"Retry-After": str(reset), **spent.headers()},
    )


def budget_headers(extensions: dict[str, Any], response_start: Message) -> list[tuple[bytes, bytes]]:
    """`RateLimit-Policy` and `RateLimit` for what the request spent (web.observe puts them on
    every answer, error answers too), unless the answer has its own (a 429's)."""
    spent: Spent | None = extensions.get(STATE)
    if spent is None or not spent.policies:
        return []
    present = {name.lower() for name, _ in response_start.get("headers", ())}
    encoded = ((name.lower().encode(), value.encode()) for name, value in spent.headers().items())
    return [(name, value) for name, value in encoded if name not in present]


def spent_of(scope: Scope) -> Spent:
    """The request's record of spent budgets (made on first use)."""
    extensions = scope.setdefault("extensions", {})
    spent: Spent = extensions.setdefault(STATE, Spent())
    return spent


def client_address(scope: Scope) -> str:
    """The peer's address (uvicorn sets it from X-Forwarded-For only for trusted proxies)."""
    client: Sequence[Any] | None = scope.get("client")
    return str(client[0]) if client else "unknown"
