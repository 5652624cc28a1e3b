"""Retrying an action that can lose a race to another writer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retried(action: Callable[[], T], *, attempts: int, retry_if: Callable[[Exception], bool]) -> T:
    """Run `action` up to `attempts` times while it raises an error `retry_if` accepts;
    the last error, or any other, propagates."""
    attempt = 1
    while True:
        try:
            return action()
        except Exception as exc:
            if attempt >= attempts or not retry_if(exc):
                raise
            attempt += 1
