"""A request's way from Connexion's routing to its handler, in two steps:

- `RequestParseMiddleware`, right after routing and before security, reads the request once
  (`web.requests`) and refuses a single-valued header sent twice (security reads some);
- `Dispatcher`, the app inside Connexion's middlewares, refuses unknown or repeated query
  parameters, validates the routed, authenticated request against its operation's row of the
  table (`web.operations`) and calls the handler with exactly the values it validated.

Parameters come from the request as `web.requests` parsed it, converted and validated by
their compiled rules, with the spec's defaults; the body is read here, once, and parsed and
validated by the operation's body rule. Nothing reads the request a second time.

A read the spec declares heavy (`x-read-cost`, core.heavy_reads) runs within its
organization's budget and the time limit, with every database read it makes on threads.

A handler returns the body (200), `(body, status)` or `(body, status, headers)`; a body of
None is sent empty (204). Handlers that are `async def` run on the event loop; plain ones run
on the database threads (`core.db_threads`): reads for GET, writes for every other method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sessions_api.core import db_threads, heavy_reads
from sessions_api.models import event_streams, queue_waits
from sessions_api.web.errors import ApiError
from sessions_api.web.operations import STREAMED_MEDIA_TYPE, Operation
from sessions_api.web.queue import QUEUE_CHANGES
from sessions_api.web.requests import ParsedRequest, parsed_of, routed_handler_path
from sessions_api.web.state import AppState
from sessions_api.web.validation import parse_content_type

# Where Connexion's security middleware leaves what the security handler returned.
_CONNEXION_CONTEXT = "connexion_context"
_JSON = (b"content-type", b"application/json")
# Every answer is the caller's own (some carry a secret shown once): no cache keeps any.
_NO_STORE = (b"cache-control", b"no-store")
_NO_HEADERS: dict[str, str] = {}
_VARY_ACCEPT = (b"vary", b"Accept")


class RequestParseMiddleware:
    """Reads the routed request once and refuses a single-valued header sent twice (its
    operation's row of the table says which), before security reads them."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.operations = state.operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            operation = self.operations.get(routed_handler_path(scope))
            if operation is not None:
                operation.refuse_repeated_headers(parsed_of(scope))
        await self.app(scope, receive, send)


class Dispatcher:
    """The innermost ASGI app: the handler of the routed operation, its answer as JSON."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.operations = state.operations

    def _nudge_background_work(self, operation: Operation) -> None:
        """A write may have added to the outbox; a start or a release may have queued a start or
        freed a device."""
        if self.state.webhook_sender is not None:
            self.state.webhook_sender.nudge()
        if operation.operation_id in QUEUE_CHANGES:
            if self.state.queue_server is not None:
                self.state.queue_server.nudge()
            queue_waits.check_now()  # a request may have left the queue: wake its long-polls
        event_streams.check_now()  # it may have written events: wake this process's streams

    async def _heavy(self, operation: Operation, kwargs: dict[str, Any], scope: Scope) -> Any:
        """A heavy read (core.heavy_reads): within its organization's budget and the time limit;
        every database read it makes runs on the heavy reads' threads, never on the loop."""
        principal = scope["extensions"][_CONNEXION_CONTEXT]["token_info"]["principal"]
        with self.state.heavy_reads.admit(principal.organization_id):
            with heavy_reads.time_limited(self.state.settings.report_timeout_seconds):
                return await _call(operation, kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        operation = self.operations.get(routed_handler_path(scope))
        if operation is None:
            raise HTTPException(404)
        kwargs = await arguments(operation, scope, receive)
        if operation.is_heavy(kwargs):
            result = await self._heavy(operation, kwargs, scope)
        else:
            result = await _call(operation, kwargs)
        if operation.writes:
            self._nudge_background_work(operation)
        if isinstance(result, Response):  # a file, or an empty answer with headers of its own
            await result(scope, receive, send)
            return
        status, headers = 200, _NO_HEADERS
        if isinstance(result, tuple):
            result, status, *rest = result
            headers = rest[0] if rest else {}
        raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        if isinstance(result, str):  # text in the media type the handler's headers name
            body = result.encode()
        else:
            body = b"" if result is None else orjson.dumps(result)
            if result is not None:
                raw_headers.append(_JSON)
        if len(operation.media_types) > 1:
            raw_headers.append(_VARY_ACCEPT)
        raw_headers.append(_NO_STORE)
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})


async def arguments(operation: Operation, scope: Scope, receive: Receive) -> dict[str, Any]:
    """The handler's keyword arguments: every parameter validated (in the spec's order: path,
    query, header as declared), those it takes passed, then the body."""
    parsed = parsed_of(scope)
    operation.refuse_unknown_or_repeated_query(parsed)
    kwargs: dict[str, Any] = {}
    for rule in operation.parameters:
        value = rule.value(_sent(rule.location, rule.key, parsed, scope))
        if value is not None and rule in operation.arguments:
            kwargs[rule.argument] = value
    if len(operation.media_types) > 1:
        kwargs["media_type"] = negotiated(parsed.headers.get("accept", []), operation.media_types)
    if operation.wants_token_info:
        kwargs["token_info"] = scope["extensions"][_CONNEXION_CONTEXT]["token_info"]
    if operation.streams_body:
        if parse_content_type(parsed.header("content-type") or "")[0] != STREAMED_MEDIA_TYPE:
            raise ApiError(415, f"Send the request body as {STREAMED_MEDIA_TYPE}.")
        kwargs["body"] = _chunks(receive)
    elif operation.body is not None:
        body = operation.body.value(parsed.header("content-type"), await _body(receive))
        if operation.wants_body:
            kwargs["body"] = body
    return kwargs


def negotiated(accept: list[str], offered: tuple[str, ...]) -> str:
    """The offered media type the Accept header values prefer (RFC 9110: the most specific
    range that matches gives a type its weight); the first offered (JSON) on a tie, without
    Accept, or when none is acceptable: an answer in the default type beats a 406."""
    weights = {kind: 0.0 for kind in offered}
    specificity = {kind: -1 for kind in offered}
    for media_range in ",".join(accept).split(","):
        kind, parameters = parse_content_type(media_range)
        try:
            weight = float(parameters.get("q", "1"))
        except ValueError:
            continue
        for candidate in offered:
            rank = _match_rank(kind, candidate)
            if rank > specificity[candidate]:
                weights[candidate], specificity[candidate] = weight, rank
    best = max(offered, key=lambda kind: weights[kind])  # max keeps the first of equals
    return best if weights[best] > 0 else offered[0]


def _match_rank(media_range: str, kind: str) -> int:
    """How specifically `media_range` names `kind`: 2 exactly, 1 as type/*, 0 as */*, -1 not."""
    if media_range == kind:
        return 2
    if media_range == kind.split("/")[0] + "/*":
        return 1
    return 0 if media_range == "*/*" else -1


def _sent(location: str, key: str, parsed: ParsedRequest, scope: Scope) -> list[str] | None:
    if location == "query":
        return parsed.query.get(key)
    if location == "header":
        return parsed.headers.get(key)
    value = scope.get("path_params", {}).get(key)
    return None if value is None else [value]


async def _call(operation: Operation, kwargs: dict[str, Any]) -> Any:
    if operation.is_async:
        return await operation.handler(**kwargs)
    return await db_threads.run(operation.handler, writes=operation.writes, **kwargs)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """A streamed body's chunks as they arrive; ClientDisconnect when the client goes away."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
