"""What every list operation shares: the `before` cursor and the list envelope."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from models.sessions import Page
from sessions_api.errors import ApiError
from sessions_api.timestamps import parse_rfc3339


def cursor(before: str | None) -> datetime | None:
    if before is None:
        return None
    try:
        # Stored instants are whole microseconds: rounding a finer bound up keeps "strictly before" exact.
        return parse_rfc3339(before, round_up=True, clamp=True)
    except ValueError as exc:
        raise ApiError(400, f"Query parameter 'before' must be an RFC 3339 timestamp with an offset: {exc}.") from None


def list_body(page: Page, render: Callable[[object], dict]) -> dict:
    """The list envelope; `nextCursor` (the last item's createdAt) only when more items exist."""
    body = {"object": "list", "data": [render(row) for row in page.rows]}
    if page.has_more:
        body["nextCursor"] = page.rows[-1].created_at
    return body
