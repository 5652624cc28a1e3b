"""The list envelope every list operation answers with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Listed(Protocol):
    """A page of a list: its items (each with the cursor text `created_at`) and whether more exist
    (models.paging.Page, models.queue.ViewedPage)."""

    @property
    def rows(self) -> Sequence[Any]: ...

    @property
    def has_more(self) -> bool: ...


def list_body(page: Listed, render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The list envelope; `nextCursor` (the last item's createdAt) only when more items exist."""
    body: dict[str, Any] = {"object": "list", "data": [render(row) for row in page.rows]}
    if page.has_more:
        body["nextCursor"] = page.rows[-1].created_at
    return body
