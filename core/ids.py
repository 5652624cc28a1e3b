"""Ids: every id of the API is a UUID."""

from __future__ import annotations

import uuid


def parse_uuid(text: str) -> uuid.UUID | None:
    """The UUID `text` spells, or None."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
