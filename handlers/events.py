"""Handlers of the Events tag: the organization's event log, as pages of JSON or as a stream
of Server-Sent Events (the WHATWG HTML standard's `text/event-stream`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sessions_api.core import db_threads, settings
from sessions_api.handlers.listing import list_body
from sessions_api.models import Role, event_streams, events
from sessions_api.models.paging import cursor

EVENT_STREAM = "text/event-stream"
# How long a client waits before reconnecting (`retry:`), in milliseconds.
RETRY_MILLISECONDS = 3000


async def listEvents(
    token_info: dict[str, Any],
    media_type: str,
    limit: int = 100,
    before: str | None = None,
    type: list[str] | None = None,
    session: str | None = None,
    last_event_id: str | None = None,
) -> dict[str, Any] | StreamingResponse:
    principal = token_info["principal"]
    types = tuple(type or ())
    session_id = uuid.UUID(session) if session else None
    if media_type == EVENT_STREAM:
        return await _stream(principal, types, session_id, last_event_id)
    page = await db_threads.read(
        events.list_page,
        principal.organization_id,
        limit,
        cursor(before),
        admin=principal.role is Role.admin,
        types=types,
        session_id=session_id,
    )
    return list_body(page, events.event_document)


async def _stream(
    principal: Any, types: tuple[str, ...], session_id: uuid.UUID | None, last_event_id: str | None
) -> StreamingResponse:
    """From now on, or after `Last-Event-ID` (what came after it first, in order)."""
    config = settings.current()
    if last_event_id is not None:
        position = events.position_of(last_event_id)
        events.refuse_expired(position)
    stream = event_streams.open_stream(principal)  # counted from here; `follow` ends it
    if last_event_id is None:
        position = await db_threads.read(events.newest, principal.organization_id)
    followed = event_streams.follow(
        stream,
        position,
        types=types,
        session_id=session_id,
        heartbeat_seconds=config.stream_heartbeat_seconds,
        until=time.monotonic() + config.stream_max_seconds,
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx: pass each message on at once
    return _EventStream(_messages(followed), media_type=EVENT_STREAM, headers=headers)


class _EventStream(StreamingResponse):
    """A stream that also listens for its client going away, whatever the ASGI version: a
    stopping server says so (web.protocols), and the stream ends at once instead of at its
    next message."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream_then_stop() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream_then_stop)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


async def _messages(followed: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    async for row in followed:
        if row is None:
            yield b": heartbeat\n\n"
            continue
        document = events.event_document(row)
        yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
            document["id"].encode(),
            document["type"].encode(),
            orjson.dumps(document),
        )
