"""The bearer security handler: the function the spec's `bearerAuth` scheme runs.

Once, for every operation: it refuses an address that has failed to authenticate too often
(before any lookup), authenticates the API key, resolves the organization the request acts
on, counts the request against the key's rate limit (and a session start against the
organization's), and checks the caller's role against the operation's `x-required-roles`;
handlers receive the result as `token_info["principal"]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connexion.exceptions import OAuthResponseProblem
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.abstract import ROUTING_CONTEXT

from sessions_api.core import db_threads, settings
from sessions_api.core.logs import note_caller
from sessions_api.core.metrics import KEY_USE_SKIPPED
from sessions_api.models import Role, api_keys
from sessions_api.models.errors import AccessDenied
from sessions_api.web.errors import UNAUTHENTICATED_MESSAGE, ApiError
from sessions_api.web.rate_limits import RateLimits, client_address, spent_of
from sessions_api.web.routing import operations

ORGANIZATION_HEADER = "X-Organization-Id"
# The scheme in the spec whose `x-bearerInfoFunc` the app factory points here.
SCHEME = "bearerAuth"


class RoleRequirements:
    """The roles that may call each operation, from its `x-required-roles`, by the handler path
    Connexion routes it to (what its routing context names)."""

    def __init__(self, spec: Mapping[str, Any], handler_path: Callable[[str], str]) -> None:
        self._roles = {
            handler_path(operation["operationId"]): frozenset(Role(role) for role in operation["x-required-roles"])
            for operation in operations(spec)
            if "x-required-roles" in operation
        }

    def check(self, operation_id: str | None, role: Role) -> None:
        allowed = self._roles.get(operation_id or "")
        if allowed is not None and role not in allowed:
            names = " or ".join(sorted(role.value for role in allowed))
            raise ApiError(403, f"Your role in this organization ({role.value}) may not do this; it takes {names}.")


@dataclass(frozen=True)
class Rules:
    """What the app factory reads from the spec and the settings for the security handler."""

    roles: RoleRequirements
    rate_limits: RateLimits
    # Handler paths of the operations that also spend the organization's start budget.
    session_starts: frozenset[str]


_rules: Rules | None = None


def configure(rules: Rules) -> None:
    global _rules
    _rules = rules


async def authenticate(token: str, request: ConnexionRequest) -> dict[str, Any]:
    assert _rules is not None, "the app factory configures the security handler"
    limits, spent = _rules.rate_limits, spent_of(request.scope)
    address = client_address(request.scope)
    await limits.refuse_if_spent(limits.auth_failures, address)
    requested = request.headers.get(ORGANIZATION_HEADER)
    interval = timedelta(seconds=settings.current().key_last_used_interval)
    try:
        principal = await db_threads.read(api_keys.authenticate, token, requested, interval)
    except AccessDenied as denied:  # a live key, another organization: it counts all the same
        await limits.spend(limits.key, str(denied.key_id), spent)
        raise
    if principal is None:
        await limits.spend(limits.auth_failures, address, spent)
        raise OAuthResponseProblem(detail=UNAUTHENTICATED_MESSAGE)
    note_caller(organization_id=principal.organization_id, key_id=principal.key_id)
    if principal.last_use_due:
        _record_use_soon(principal.key_id)
    await limits.spend(limits.key, str(principal.key_id), spent)
    operation = request.scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id")
    if operation in _rules.session_starts:
        await limits.spend(limits.start, str(principal.organization_id), spent)
    _rules.roles.check(operation, principal.role)
    return {"sub": str(principal.user_id), "principal": principal}


# Keys whose last use is being written: one write per key at a time, however many requests.
_recording: set[Any] = set()


def _record_use_soon(key_id: Any) -> None:
    """Note the key's use after the request, on the writes' threads, without waiting for it."""
    if key_id in _recording:
        return
    _recording.add(key_id)

    def record() -> None:
        try:
            if not api_keys.record_use(key_id):
                KEY_USE_SKIPPED.inc()
        finally:
            _recording.discard(key_id)

    db_threads.write_soon(record)
