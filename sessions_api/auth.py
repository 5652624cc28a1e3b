"""The bearer security handler named in the spec (`x-bearerInfoFunc`).

It authenticates the API key, resolves the organization the request acts on, and checks the
caller's role against the operation's `x-required-roles`, once, for every operation;
handlers receive the result as `token_info["principal"]`.
"""

from __future__ import annotations

from datetime import timedelta

from connexion.exceptions import OAuthResponseProblem
from starlette.concurrency import run_in_threadpool

from models import Role, keys
from sessions_api import settings
from sessions_api.errors import UNAUTHENTICATED_MESSAGE, ApiError

ORGANIZATION_HEADER = "X-Organization-Id"

# Handler path of an operation (as Connexion routes it) -> the roles that may call it.
_required_roles: dict[str, frozenset[Role]] = {}


def require_roles(required: dict[str, frozenset[Role]]) -> None:
    """Set the roles each operation needs (the app factory reads them from the spec)."""
    _required_roles.clear()
    _required_roles.update(required)


async def authenticate(token: str, request) -> dict:
    requested = request.headers.get(ORGANIZATION_HEADER)
    interval = timedelta(seconds=settings.current().key_last_used_interval_seconds)
    # The lookup is blocking database work: keep it off the event loop.
    principal = await run_in_threadpool(keys.authenticate, token, requested, interval)
    if principal is None:
        raise OAuthResponseProblem(detail=UNAUTHENTICATED_MESSAGE)
    operation = request.scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
    allowed = _required_roles.get(operation)
    if allowed is not None and principal.role not in allowed:
        names = " or ".join(sorted(role.value for role in allowed))
        raise ApiError(403, f"Your role in this organization ({principal.role.value}) may not do this; it takes {names}.")
    return {"sub": str(principal.user_id), "principal": principal}
