"""Text that callers give: names and email addresses, checked once for every caller.

No database keeps the NUL character or half a surrogate pair as text, and no name needs a
control character: such text is refused before it reaches a query.
"""

from __future__ import annotations

import unicodedata

from sessions_api.models.errors import InvalidInput

MAX_NAME = 200
MAX_EMAIL = 320


# Python counts these control characters as spaces; Unicode (and the spec's pattern) does not.
_CONTROLS_PYTHON_STRIPS = frozenset("\x1c\x1d\x1e\x1f")


def clean_name(name: str, what: str) -> str:
    """`name` without surrounding spaces: 1 to 200 characters, none of them a control character
    (leading spaces may be any white space; after them, no control character at all)."""
    body = name.lstrip()
    if not is_storable(body) or _CONTROLS_PYTHON_STRIPS.intersection(name[: len(name) - len(body)]):
        raise InvalidInput(f"the {what} must not contain control characters")
    name = body.rstrip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"the {what} must have 1 to {MAX_NAME} characters")
    return name


def is_email_address(email: str) -> bool:
    """Whether `email` may be an account's address: an '@', no spaces, at most 320 characters."""
    return "@" in email and len(email) <= MAX_EMAIL and not any(ch.isspace() for ch in email) and is_storable(email)


def is_storable(text: str) -> bool:
    """No control character (NUL among them) and no lone surrogate."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)
