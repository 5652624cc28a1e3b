"""The limit on request bodies: larger ones answer 413 `payload_too_large`, read no further.

A declared `Content-Length` over the limit is refused before any of the body is read; a body
without one (chunked) is counted as it arrives and refused as soon as it passes the limit, so
a process never holds more than the limit (plus one network chunk) of any request body.
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
    """Inside Connexion's exception handling, so that the refusal is the error envelope."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    raise payload_too_large(self.limit)
                break
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise payload_too_large(self.limit)
            return message

        await self.app(scope, counted_receive, send)
