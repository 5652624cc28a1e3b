"""The list envelope every list operation answers with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Row

from sessions_api.models.paging import Page


def list_body(page: Page, render: Callable[[Row[Any]], dict[str, Any]]) -> dict[str, Any]:
    """The list envelope; `nextCursor` (the last item's createdAt) only when more items exist."""
    body: dict[str, Any] = {"object": "list", "data": [render(row) for row in page.rows]}
    if page.has_more:
        body["nextCursor"] = page.rows[-1].created_at
    return body
