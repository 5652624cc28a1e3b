"""The limit on request bodies: larger ones answer 413 `payload_too_large`, read no further.

A declared `Content-Length` over the limit is refused before any of the body is read. A body
sent chunked (no `Content-Length`) is read as it arrives, refused as soon as it passes the
limit, and otherwise handed on with its length, as a sized one is (Connexion reads a body
only when its length is declared). Either way, a process never holds more than the limit
(plus one network chunk) of any request body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessions_api.web.errors import ApiError


def payload_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than the {limit} bytes this server accepts.",
        # The rest of the body is not read: the connection cannot carry another request.
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    """Inside Connexion's exception handling, so that the refusal is the error envelope.

    Paths under `streamed_prefixes` (an artifact's bytes, streamed to their handler) take
    bodies up to `max_streamed_bytes` instead, and a chunked one is counted as it passes on,
    never gathered."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        streamed_prefixes: tuple[str, ...] = (),
        max_streamed_bytes: int = 0,
    ) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.streamed_prefixes = streamed_prefixes
        self.streamed_limit = max_streamed_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        streamed = bool(self.streamed_prefixes) and scope["path"].startswith(self.streamed_prefixes)
        limit = self.streamed_limit if streamed else self.limit
        length, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "The Content-Length header must be a number of bytes.")
            if int(length) > limit:
                raise payload_too_large(limit)
            await self.app(scope, _counting(receive, limit), send)
        elif chunked and not streamed:
            body, receive = await self._read_whole(receive)
            headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            await self.app(scope, receive, send)
        else:
            await self.app(scope, _counting(receive, limit), send)

    async def _read_whole(self, receive: Receive) -> tuple[bytes, Receive]:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return bytes(body), _replay([message], receive)
            body += message.get("body", b"")
            if len(body) > self.limit:
                raise payload_too_large(self.limit)
            if not message.get("more_body", False):
                break
        return bytes(body), _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive)


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing more body than declared-and-allowed (a lying Content-Length)."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise payload_too_large(limit)
        return message

    return counted


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed
