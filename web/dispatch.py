"""The app inside Connexion's middlewares: it calls the handler of the operation Connexion
routed, authenticated and validated the request for, and sends what the handler returns.

Connexion's own app would build the handler's decorators again for every request and route
the request a second time; this one plans each operation once, at start-up: which handler,
which arguments from where (path, query, headers, body, the caller), each converted to its
schema's type (the request is already validated against it), and where the handler runs.

A handler returns the body (200), `(body, status)` or `(body, status, headers)`; a body of
None is sent empty (204). Handlers that are `async def` run on the event loop; plain ones run
on the database threads (`core.db_threads`): reads for GET, writes for every other method.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from sessions_api.core import db_threads
from sessions_api.web.routing import METHODS

# Where Connexion's security middleware leaves what the security handler returned.
_CONNEXION_CONTEXT = "connexion_context"
_JSON = (b"content-type", b"application/json")
_NO_HEADERS: dict[str, str] = {}


def _convert(schema: Mapping[str, Any]) -> Callable[[str], Any]:
    """Text of a (validated) parameter to its schema's type."""
    kind = schema.get("type")
    if kind == "integer":
        return int
    if kind == "number":
        return float
    if kind == "boolean":
        return lambda text: text.lower() == "true"
    return str


class _Parameter:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        schema = spec.get("schema", {})
        self.location: str = spec["in"]
        self.name: str = spec["name"]
        # Headers by their name in snake case (`Idempotency-Key` -> `idempotency_key`).
        self.argument = re.sub(r"\W", "_", self.name).lower() if self.location == "header" else self.name
        self.key = self.name.lower() if self.location == "header" else self.name
        self.many = schema.get("type") == "array"
        self.convert = _convert(schema.get("items", {}) if self.many else schema)
        self.default = schema.get("default")


class Operation:
    """One operation, planned: its handler and where each of its arguments comes from."""

    def __init__(self, handler: Callable[..., Any], spec: Mapping[str, Any], method: str) -> None:
        accepts = inspect.signature(handler).parameters
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.writes = method not in ("get", "head")
        self.parameters = [
            parameter
            for parameter in (_Parameter(p) for p in spec.get("parameters", []))
            if parameter.argument in accepts
        ]
        self.wants_body = "body" in accepts
        self.wants_token_info = "token_info" in accepts

    async def arguments(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.parameters:
            sources = {
                "path": scope.get("path_params", {}),
                "query": _query(scope),
                "header": _headers(scope),
            }
            for parameter in self.parameters:
                raw = sources[parameter.location].get(parameter.key)
                if raw is None:
                    if parameter.default is not None:
                        kwargs[parameter.argument] = parameter.default
                elif parameter.many:
                    kwargs[parameter.argument] = [parameter.convert(item) for item in raw]
                else:
                    kwargs[parameter.argument] = parameter.convert(raw[-1] if isinstance(raw, list) else raw)
        if self.wants_token_info:
            kwargs["token_info"] = scope["extensions"][_CONNEXION_CONTEXT]["token_info"]
        if self.wants_body:
            body = await _body(receive)
            kwargs["body"] = orjson.loads(body) if body else None
        return kwargs

    async def call(self, kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.handler(**kwargs)
        return await db_threads.run(self.handler, writes=self.writes, **kwargs)


class Dispatcher:
    """The innermost ASGI app: the handler of the routed operation, its answer as JSON."""

    def __init__(self, spec: Mapping[str, Any], handler_path: Callable[[str], str], resolve: Callable[[str], Any]):
        self.operations: dict[str, Operation] = {}
        for item in spec["paths"].values():
            for method in METHODS:
                if method in item:
                    path = handler_path(item[method]["operationId"])
                    parameters = [
                        _resolved(spec, parameter)
                        for parameter in (*item.get("parameters", []), *item[method].get("parameters", []))
                    ]
                    self.operations[path] = Operation(resolve(path), {**item[method], "parameters": parameters}, method)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        routed = scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id")
        operation = self.operations.get(routed) if routed else None
        if operation is None:
            raise HTTPException(404)
        result = await operation.call(await operation.arguments(scope, receive))
        status, headers = 200, _NO_HEADERS
        if isinstance(result, tuple):
            result, status, *rest = result
            headers = rest[0] if rest else {}
        body = b"" if result is None else orjson.dumps(result)
        raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        if result is not None:
            raw_headers.append(_JSON)
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})


def _resolved(spec: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    """`node` with its local `$ref` (and its schema's) followed: what a parameter needs."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    resolved = dict(node)
    if isinstance(resolved.get("schema"), Mapping):
        resolved["schema"] = _resolved(spec, resolved["schema"])
        if isinstance(resolved["schema"].get("items"), Mapping):
            resolved["schema"]["items"] = _resolved(spec, resolved["schema"]["items"])
    return resolved


def _query(scope: Scope) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return values


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
