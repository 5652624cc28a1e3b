"""`X-Request-Id` on every response (the caller's, if well-formed, else a new one), as the
contract asks; a plain ASGI middleware for the FastAPI reference, a function for the floor."""

from __future__ import annotations

import re
import uuid

_VALID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def request_id(scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _VALID.fullmatch(value):
            return value
    return uuid.uuid4().hex.encode()


class RequestIdMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)
