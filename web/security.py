"""The bearer security handler: the function the spec's `bearerAuth` scheme runs.

Once, for every operation: it authenticates the API key, resolves the organization the
request acts on, counts the request against the key's rate limit (and a session start against
the organization's), and checks the caller's role against the operation's roles (its row of
the app's table of operations); handlers receive the result as `token_info["principal"]`.

Failed authentications are counted per client address. Past that budget a failure answers 429,
but a well-formed key is still looked up (one indexed read and a constant-time compare) and
served when it is valid: someone else's failures from the same address (a proxy, a NAT) never
lock out a valid key. A token that is not even shaped like a key costs no lookup.

The organization is the one the path names for operations under
`/organizations/{organizationId}` (X-Organization-Id is not read there), and one the caller
may not act on is then a 404 with the body of an organization that does not exist; for
every other operation it is the selected one (see `api_keys.authenticate`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from connexion.exceptions import OAuthResponseProblem
from connexion.lifecycle import ConnexionRequest
from connexion.security import NO_VALUE, AbstractSecurityHandler

from sessions_api.core import db_threads
from sessions_api.core.ids import parse_uuid
from sessions_api.core.logs import note_caller
from sessions_api.core.metrics import KEY_USE_SKIPPED
from sessions_api.models import Role, api_keys
from sessions_api.models.errors import NO_SUCH_ORGANIZATION, AccessDenied, NotFound
from sessions_api.web.errors import UNAUTHENTICATED_MESSAGE, ApiError
from sessions_api.web.operations import ORGANIZATION_PARAMETER, Operation
from sessions_api.web.rate_limits import client_address, spent_of
from sessions_api.web.requests import parsed_of, routed_handler_path
from sessions_api.web.state import AppState, state_of

ORGANIZATION_HEADER = "X-Organization-Id"
BEARER = "bearer"


class BearerKeys(AbstractSecurityHandler):
    """Connexion's security handler for `http` `bearer` schemes (given to it in `security_map`):
    `authenticate`, called with the token. Connexion's own inspects the function's signature
    on every request; this one knows it."""

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: Any) -> Callable[..., Any]:
        return _verify


async def _verify(request: ConnexionRequest) -> Any:
    authorization = parsed_of(request.scope).header("Authorization")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        return NO_VALUE  # Connexion answers 401: no credentials of this scheme
    return await authenticate(token.strip(), request)


async def authenticate(token: str, request: ConnexionRequest) -> dict[str, Any]:
    state = state_of(request.scope)
    limits, spent = state.rate_limits, spent_of(request.scope)
    address = client_address(request.scope)
    if not api_keys.is_well_formed(token):
        await limits.count_failure(address, spent)  # 429 past the budget, else 401 below
        raise OAuthResponseProblem(detail=UNAUTHENTICATED_MESSAGE)
    operation = state.operations.get(routed_handler_path(request.scope))
    in_path = operation is not None and operation.organization_in_path
    parsed = parsed_of(request.scope)
    requested = _path_organization(request) if in_path else parsed.header(ORGANIZATION_HEADER)
    interval = timedelta(seconds=state.settings.key_last_used_interval)
    try:
        principal = await api_keys.authenticate(token, requested, interval)
    except AccessDenied as denied:  # a live key, another organization: it counts all the same
        await limits.spend(limits.key, str(denied.key_id), spent)
        if in_path:  # not one of the caller's: exactly as if it did not exist
            raise NotFound(NO_SUCH_ORGANIZATION) from None
        raise
    if principal is None:
        await limits.count_failure(address, spent)
        raise OAuthResponseProblem(detail=UNAUTHENTICATED_MESSAGE)
    note_caller(organization_id=principal.organization_id, key_id=principal.key_id)
    if principal.last_use_due:
        _record_use_soon(state, principal.key_id)
    await limits.spend(limits.key, str(principal.key_id), spent)
    await limits.spend(limits.user, str(principal.user_id), spent)
    await limits.spend(limits.organization, str(principal.organization_id), spent)
    if operation is not None and operation.spends_start_budget:
        await limits.spend(limits.start, str(principal.organization_id), spent)
    _check_role(operation, principal.role)
    return {"sub": str(principal.user_id), "principal": principal}


def _check_role(operation: Operation | None, role: Role) -> None:
    """Default-deny: only the roles the operation names (none for one the table lacks)."""
    if operation is None:
        raise ApiError(403, "No role may do this.")
    if role not in operation.roles:
        names = " or ".join(sorted(allowed.value for allowed in operation.roles))
        raise ApiError(403, f"Your role in this organization ({role.value}) may not do this; it takes {names}.")


def _path_organization(request: ConnexionRequest) -> str | None:
    """The organization the path names. A malformed id is not looked up (the request acts on
    the key's default organization until request validation answers 400 naming the id, as it
    does for every malformed id)."""
    # Connexion's routing has put the path's parameters in the scope, as Starlette does.
    value = request.scope.get("path_params", {}).get(ORGANIZATION_PARAMETER)
    return value if isinstance(value, str) and parse_uuid(value) is not None else None


def _record_use_soon(state: AppState, key_id: Any) -> None:
    """Note the key's use after the request, on the writes' threads, without waiting for it."""
    recording = state.recording_key_use
    if key_id in recording:
        return
    recording.add(key_id)

    def record() -> None:
        try:
            if not api_keys.record_use(key_id):
                KEY_USE_SKIPPED.inc()
        finally:
            recording.discard(key_id)

    db_threads.write_soon(record)
