"""From the spec's operations to the handler functions that serve them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from connexion.resolver import Resolver

HANDLERS_PACKAGE = "sessions_api.handlers"
METHODS = ("get", "put", "post", "patch", "delete")


def operations(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every operation object of the spec."""
    for _path, operation in paths(spec):
        yield operation


def paths(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every operation object of the spec, with its path template."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, item[method]


def handler_module(tag: str) -> str:
    """The handler module of a tag: `Sessions` -> `sessions`, `API keys` -> `api_keys`."""
    return re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_")


class TagResolver(Resolver):
    """Operation `listSessions` tagged `Sessions` is `sessions_api.handlers.sessions.listSessions`:
    one handler module per tag, one function per operationId (Connexion's RelativeResolver,
    with the module chosen by the operation's tag)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self._paths = {
            operation[
                "operationId"
            ]: f"{HANDLERS_PACKAGE}.{handler_module(operation['tags'][0])}.{operation['operationId']}"
            for operation in operations(spec)
        }

    def handler_path(self, operation_id: str) -> str:
        return self._paths[operation_id]

    def resolve_operation_id(self, operation: Any) -> str:
        return self.handler_path(operation.operation_id)

    def function(self, handler_path: str) -> Any:
        return self.resolve_function_from_operation_id(handler_path)
