"""The bearer security handler: the function the spec's `bearerAuth` scheme runs.

Once, for every operation: it refuses an address that has failed to authenticate too often
(before any lookup), authenticates the API key, resolves the organization the request acts
on, counts the request against the key's rate limit (and a session start against the
organization's), and checks the caller's role against the operation's `x-required-roles`;
handlers receive the result as `token_info["principal"]`.

The organization is the one the path names for operations under
`/organizations/{organizationId}` (X-Organization-Id is not read there), and one the caller
may not act on is then a 404 with the body of an organization that does not exist; for
every other operation it is the selected one (see `api_keys.authenticate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connexion.exceptions import OAuthResponseProblem
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.security import NO_VALUE, AbstractSecurityHandler

from sessions_api.core import db_threads, settings
from sessions_api.core.ids import parse_uuid
from sessions_api.core.logs import note_caller
from sessions_api.core.metrics import KEY_USE_SKIPPED
from sessions_api.models import Role, api_keys
from sessions_api.models.errors import NO_SUCH_ORGANIZATION, AccessDenied, NotFound
from sessions_api.web.errors import UNAUTHENTICATED_MESSAGE, ApiError
from sessions_api.web.rate_limits import RateLimits, client_address, spent_of
from sessions_api.web.routing import operations, paths

ORGANIZATION_HEADER = "X-Organization-Id"
BEARER = "bearer"
# The path parameter that names the organization a request acts on, where there is one.
ORGANIZATION_PARAMETER = "organizationId"


class BearerKeys(AbstractSecurityHandler):
    """Connexion's security handler for `http` `bearer` schemes (given to it in `security_map`):
    `authenticate`, called with the token. Connexion's own inspects the function's signature
    on every request; this one knows it."""

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: Any) -> Callable[..., Any]:
        return _verify


async def _verify(request: ConnexionRequest) -> Any:
    authorization = request.headers.get("Authorization")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        return NO_VALUE  # Connexion answers 401: no credentials of this scheme
    return await authenticate(token.strip(), request)


class AccessRules:
    """What the security handler needs of each operation, by the handler path Connexion routes
    it to (what its routing context names): the roles that may call it, from its
    `x-required-roles`, and whether its path names the organization it acts on."""

    def __init__(self, spec: Mapping[str, Any], handler_path: Callable[[str], str]) -> None:
        self._roles = {
            handler_path(operation["operationId"]): frozenset(Role(role) for role in operation["x-required-roles"])
            for operation in operations(spec)
            if "x-required-roles" in operation
        }
        self._organization_in_path = frozenset(
            handler_path(operation["operationId"])
            for path, operation in paths(spec)
            if f"{{{ORGANIZATION_PARAMETER}}}" in path
        )

    def organization_in_path(self, operation_id: str | None) -> bool:
        return operation_id in self._organization_in_path

    def check(self, operation_id: str | None, role: Role) -> None:
        allowed = self._roles.get(operation_id or "")
        if allowed is not None and role not in allowed:
            names = " or ".join(sorted(role.value for role in allowed))
            raise ApiError(403, f"Your role in this organization ({role.value}) may not do this; it takes {names}.")


@dataclass(frozen=True)
class Rules:
    """What the app factory reads from the spec and the settings for the security handler."""

    access: AccessRules
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
    await limits.refuse_failing_address(address)
    operation_id = request.scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id")
    in_path = _rules.access.organization_in_path(operation_id)
    requested = _path_organization(request) if in_path else request.headers.get(ORGANIZATION_HEADER)
    interval = timedelta(seconds=settings.current().key_last_used_interval)
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
        _record_use_soon(principal.key_id)
    await limits.spend(limits.key, str(principal.key_id), spent)
    if operation_id in _rules.session_starts:
        await limits.spend(limits.start, str(principal.organization_id), spent)
    _rules.access.check(operation_id, principal.role)
    return {"sub": str(principal.user_id), "principal": principal}


def _path_organization(request: ConnexionRequest) -> str | None:
    """The organization the path names. A malformed id is not looked up (the request acts on
    the key's default organization until request validation answers 400 naming the id, as it
    does for every malformed id)."""
    # Connexion's routing has put the path's parameters in the scope, as Starlette does.
    value = request.scope.get("path_params", {}).get(ORGANIZATION_PARAMETER)
    return value if isinstance(value, str) and parse_uuid(value) is not None else None


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
