"""What one app owns: its settings, its database, its table of operations and its rate limits.

The app factory makes one `AppState` and hands it to each of its middlewares. The outermost
one also leaves it in every request's scope (`state_of`), for the parts Connexion builds
itself (the security handler, the error handlers), and binds the app's database and settings
to the request's context (`core.db.bound`), where the data layer finds them. Nothing of an
app lives at module level, so two apps in one process never see each other's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.types import Scope

from sessions_api.core.concurrency import ConcurrencyCap
from sessions_api.core.db import Database
from sessions_api.core.settings import Settings
from sessions_api.web.operations import Operations
from sessions_api.web.queue import QueueServer
from sessions_api.web.rate_limits import RateLimits
from sessions_api.web.webhooks import WebhookSender

_STATE = "sessions_api.app_state"


@dataclass
class AppState:
    settings: Settings
    database: Database
    operations: Operations
    rate_limits: RateLimits
    # How many heavy reads each organization runs at once here (core.heavy_reads).
    heavy_reads: ConcurrencyCap
    # Keys whose last use is being written: one write per key at a time, however many requests.
    recording_key_use: set[Any] = field(default_factory=set)
    # The webhook sender of the app's lifespan, while it serves: a write nudges it.
    webhook_sender: WebhookSender | None = None
    # The queue server of the app's lifespan, while it serves: a write nudges it (a release
    # frees a device; a queued start may be servable at once).
    queue_server: QueueServer | None = None

    def enter(self, scope: Scope) -> None:
        """Leave this state in the request's scope (the outermost middleware does)."""
        scope.setdefault("extensions", {})[_STATE] = self


def state_of(scope: Scope) -> AppState:
    """The state of the app serving this request."""
    state: AppState = scope["extensions"][_STATE]
    return state
