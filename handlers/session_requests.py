"""Handlers of the Session requests tag: queued starts (models.queue)."""

from __future__ import annotations

import uuid
from typing import Any

from sessions_api.core import db_threads
from sessions_api.handlers.listing import list_body
from sessions_api.models import queue, queue_waits
from sessions_api.models.paging import cursor

# The longest `Prefer: wait` a request may hold its answer, in seconds.
MAX_WAIT_SECONDS = 60


def listSessionRequests(
    token_info: dict[str, Any], limit: int = 100, before: str | None = None, status: str | None = None
) -> dict[str, Any]:
    page = queue.list_page(token_info["principal"].organization_id, limit, cursor(before), status)
    return list_body(page, queue.request_document)


async def getSessionRequest(
    sessionRequestId: str, token_info: dict[str, Any], prefer: str | None = None
) -> dict[str, Any]:
    principal = token_info["principal"]
    request_id = uuid.UUID(sessionRequestId)
    view = await db_threads.read(queue.get_request, principal.organization_id, request_id)
    wait = preferred_wait(prefer)
    if view.row.status == queue.QUEUED and wait > 0:
        await queue_waits.until_left_queue(principal, request_id, wait)
        view = await db_threads.read(queue.get_request, principal.organization_id, request_id)
    return queue.request_document(view)


def cancelSessionRequest(sessionRequestId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return queue.request_document(queue.cancel(token_info["principal"], uuid.UUID(sessionRequestId)))


def preferred_wait(prefer: str | None) -> float:
    """The `wait` of an RFC 7240 `Prefer` header, in seconds (at most MAX_WAIT_SECONDS); 0
    when there is none or it is not a number (unknown preferences are ignored)."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "wait" and value.isascii() and value.isdigit():
            return float(min(int(value), MAX_WAIT_SECONDS))
    return 0.0
