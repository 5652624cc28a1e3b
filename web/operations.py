"""The table of operations: everything the request path needs of each operation, read from the
spec once, when the app is made.

For each operation: its handler and where it runs, its parameters and body with their
validators compiled (`web.validation`), the roles that may call it (`x-required-roles`,
default-deny: an operation without it stops the app at start), whether its path names the
organization it acts on, its route label for logs and metrics, the rate-limit budgets it
spends, and the methods allowed at its path. Keyed by handler path, which is what Connexion's
routing names in the scope.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connexion.json_schema import resolve_refs

from sessions_api.models import Role
from sessions_api.web.errors import ApiError
from sessions_api.web.requests import ParsedRequest, refuse_repeated
from sessions_api.web.validation import BodyRule, ParameterRule

METHODS = ("get", "put", "post", "patch", "delete")
HANDLERS_PACKAGE = "sessions_api.handlers"
# The path parameter that names the organization a request acts on, where there is one.
ORGANIZATION_PARAMETER = "organizationId"
# Headers every operation reads as one value, besides its own header parameters.
_SINGLE_HEADERS = ("Authorization", "Content-Type")
# Operations that also spend their organization's session-start budget (web.rate_limits).
_SESSION_STARTS = frozenset({"createSession"})
# The media type of request bodies streamed to their handler.
STREAMED_MEDIA_TYPE = "application/octet-stream"
# The costs a read operation declares in `x-read-cost` (core.heavy_reads).
BOUNDED, HEAVY = "bounded", "heavy"


class SpecError(ValueError):
    """The spec cannot be served as it is (the app refuses to start)."""


def handler_module(tag: str) -> str:
    """The handler module of a tag: `Sessions` -> `sessions`, `API keys` -> `api_keys`."""
    return re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_")


def handler_path_of(operation: Mapping[str, Any]) -> str:
    """Operation `listSessions` tagged `Sessions` is `sessions_api.handlers.sessions.listSessions`:
    one handler module per tag, one function per operationId."""
    return f"{HANDLERS_PACKAGE}.{handler_module(operation['tags'][0])}.{operation['operationId']}"


def spec_operations(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path template, method, operation object) of every operation of the spec."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


@dataclass(frozen=True)
class Operation:
    operation_id: str
    handler_path: str
    method: str
    # The full path template (`/api/v1/sessions/{sessionId}`): what logs and metrics call it.
    route: str
    handler: Callable[..., Any]
    is_async: bool
    # Plain handlers run on the database threads: writes for every method but GET.
    writes: bool
    parameters: tuple[ParameterRule, ...]
    # The parameters the handler takes (validated all the same when it does not).
    arguments: frozenset[ParameterRule]
    body: BodyRule | None
    # An `application/octet-stream` body (an artifact's bytes) is handed to the handler as it
    # arrives, never read whole; its limit is the artifact limit (web.body_limit).
    streams_body: bool
    wants_body: bool
    wants_token_info: bool
    # The media types its success answer comes in, JSON first; with more than one, the handler
    # takes `media_type`, the one the request's Accept prefers (web.dispatch.negotiated).
    media_types: tuple[str, ...]
    roles: frozenset[Role]
    organization_in_path: bool
    spends_start_budget: bool
    # A read's declared cost (`x-read-cost`, core.heavy_reads): heavy always, or heavy when the
    # array argument `heavy_when_several` holds several distinct values; None for a write.
    read_cost: str | None
    heavy_when_several: str | None
    allowed_methods: str
    # The query parameters it takes, and what may be sent only once.
    query_names: frozenset[str]
    single_query: tuple[tuple[str, str], ...]
    single_headers: tuple[tuple[str, str], ...]

    def is_heavy(self, arguments: Mapping[str, Any]) -> bool:
        """Whether this call is a heavy read: declared so, or given several values of the
        argument that makes it walk an unbounded set of rows."""
        if self.read_cost == HEAVY:
            return True
        several = arguments.get(self.heavy_when_several) if self.heavy_when_several else None
        return several is not None and len(set(several)) > 1

    def refuse_repeated_headers(self, parsed: ParsedRequest) -> None:
        """400 for a single-valued header sent twice: before security, which reads some of them."""
        refuse_repeated("Header", parsed.headers, self.single_headers)

    def refuse_unknown_or_repeated_query(self, parsed: ParsedRequest) -> None:
        """400 for a query parameter the operation does not take, or a single-valued one sent
        twice (after security: a caller without a key learns nothing of the parameters)."""
        for name in parsed.query:
            if name not in self.query_names:
                shown = name if len(name) <= 64 else name[:61] + "..."
                takes = ", ".join(sorted(self.query_names)) or "none"
                raise ApiError(400, f"Query parameter '{shown}' is not one this operation takes (it takes: {takes}).")
        refuse_repeated("Query parameter", parsed.query, self.single_query)


class Operations:
    """Every operation of the spec, planned; see the module's docstring."""

    def __init__(
        self, spec: Mapping[str, Any], base_path: str, resolve: Callable[[str], Any], max_json_depth: int
    ) -> None:
        resolved = resolve_refs(copy.deepcopy(dict(spec)))
        allowed = {path: _allowed_methods(item) for path, item in spec["paths"].items()}
        self._by_handler_path: dict[str, Operation] = {}
        self._allowed_at = [
            (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(base_path + path))), methods)
            for path, methods in allowed.items()
        ]
        for path, method, operation in spec_operations(resolved):
            planned = _plan(
                resolved["paths"][path], path, method, operation, base_path, allowed[path], resolve, max_json_depth
            )
            self._by_handler_path[planned.handler_path] = planned
        self._handler_paths = {operation.operation_id: operation.handler_path for operation in self}

    def handler_path_for(self, operation_id: str) -> str:
        return self._handler_paths[operation_id]

    def get(self, handler_path: str | None) -> Operation | None:
        return self._by_handler_path.get(handler_path) if handler_path else None

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._by_handler_path.values())

    def streamed_path_prefixes(self) -> tuple[str, ...]:
        """The fixed beginnings of the paths whose bodies stream (what web.body_limit lets
        through up to the artifact limit, before routing knows the operation)."""
        return tuple(sorted({operation.route.split("{", 1)[0] for operation in self if operation.streams_body}))

    def allowed_at(self, path: str) -> str | None:
        """The methods the spec allows at a request path, for the `Allow` header of a 405
        (Connexion routes each operation on its own: its 405s name one method only)."""
        for pattern, methods in self._allowed_at:
            if pattern.fullmatch(path):
                return methods
        return None


def _media_types(operation: Mapping[str, Any], accepts: Mapping[str, Any]) -> tuple[str, ...]:
    success: Mapping[str, Any] = next(
        (answer for status, answer in operation["responses"].items() if str(status).startswith("2")), {}
    )
    offered = tuple(
        sorted(success.get("content", {"application/json": {}}), key=lambda kind: kind != "application/json")
    )
    if len(offered) > 1 and "media_type" not in accepts:
        raise SpecError(
            f"Operation {operation['operationId']} answers in {len(offered)} media types: its handler takes media_type."
        )
    return offered


def _allowed_methods(item: Mapping[str, Any]) -> str:
    methods = {method.upper() for method in item if method in METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _read_cost(
    operation: Mapping[str, Any], method: str, parameters: tuple[ParameterRule, ...]
) -> tuple[str | None, str | None]:
    """A read's declared cost, and the argument whose several values make it heavy: every read
    declares one (an operation without it stops the app at start), so that nothing whose cost
    the caller chooses runs on the event loop by omission."""
    operation_id = operation["operationId"]
    if method != "get":
        return None, None
    cost = operation.get("x-read-cost")
    if cost not in (BOUNDED, HEAVY):
        raise SpecError(
            f"Operation {operation_id} declares no x-read-cost: every read is `bounded` (by its "
            "page: keyset and limit) or `heavy` (threads, a budget and a time limit)."
        )
    name = operation.get("x-heavy-when-several")
    if name is None:
        return cost, None
    rule = next((rule for rule in parameters if rule.name == name and rule.many), None)
    if rule is None:
        raise SpecError(f"Operation {operation_id}: x-heavy-when-several names no array parameter '{name}'.")
    return cost, rule.argument


def _plan(
    item: Mapping[str, Any],
    path: str,
    method: str,
    operation: Mapping[str, Any],
    base_path: str,
    allowed_methods: str,
    resolve: Callable[[str], Any],
    max_json_depth: int,
) -> Operation:
    operation_id = operation["operationId"]
    if "x-required-roles" not in operation:
        raise SpecError(
            f"Operation {operation_id} declares no x-required-roles: every operation names the roles "
            "that may call it (all three where every member may)."
        )
    handler_path = handler_path_of(operation)
    handler = resolve(handler_path)
    accepts = inspect.signature(handler).parameters
    parameters = tuple(ParameterRule(spec) for spec in (*item.get("parameters", []), *operation.get("parameters", [])))
    read_cost, heavy_when_several = _read_cost(operation, method, parameters)
    body = operation.get("requestBody")
    streams_body = body is not None and STREAMED_MEDIA_TYPE in body.get("content", {})
    return Operation(
        operation_id=operation_id,
        handler_path=handler_path,
        method=method.upper(),
        route=base_path + path,
        handler=handler,
        is_async=inspect.iscoroutinefunction(handler),
        writes=method not in ("get", "head"),
        parameters=parameters,
        arguments=frozenset(rule for rule in parameters if rule.argument in accepts),
        body=BodyRule(body, max_json_depth) if body and not streams_body else None,
        streams_body=streams_body,
        wants_body="body" in accepts,
        wants_token_info="token_info" in accepts,
        media_types=_media_types(operation, accepts),
        roles=frozenset(Role(role) for role in operation["x-required-roles"]),
        organization_in_path=f"{{{ORGANIZATION_PARAMETER}}}" in path,
        spends_start_budget=operation_id in _SESSION_STARTS,
        read_cost=read_cost,
        heavy_when_several=heavy_when_several,
        allowed_methods=allowed_methods,
        query_names=frozenset(rule.name for rule in parameters if rule.location == "query"),
        single_query=tuple((rule.key, rule.name) for rule in parameters if rule.location == "query" and not rule.many),
        single_headers=(
            *((rule.key, rule.name) for rule in parameters if rule.location == "header"),
            *((name.lower(), name) for name in _SINGLE_HEADERS),
        ),
    )
