"""Text that callers give: names and email addresses, checked once for every caller.

No database keeps the NUL character or half a surrogate pair as text, and no name needs a
control character: such text is refused before it reaches a query. Nor does a name need the
bidirectional controls, which let `Acme \u202egnp.exe` show itself to members as
`Acme exe.png`: they are refused too.
"""

from __future__ import annotations

import unicodedata

from sessions_api.models.errors import InvalidInput

MAX_NAME = 200
MAX_EMAIL = 320


# Python counts these control characters as spaces; Unicode (and the spec's pattern) does not.
_CONTROLS_PYTHON_STRIPS = frozenset("\x1c\x1d\x1e\x1f")
# The embeddings, overrides and isolates of Unicode's bidirectional algorithm (U+202A to U+202E,
# U+2066 to U+2069): the marks U+200E and U+200F stay, as names in right-to-left scripts use them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What multi-line free text may hold of the control characters: tab and line feed.
_MULTILINE_CONTROLS = frozenset("\t\n")


def clean_name(name: str, what: str, max_length: int = MAX_NAME) -> str:
    """`name` without surrounding spaces: 1 to `max_length` characters (200 unless said), none of
    them a control character (leading spaces may be any white space; after them, no control
    character at all)."""
    body = name.lstrip()
    if not is_storable(body) or _CONTROLS_PYTHON_STRIPS.intersection(name[: len(name) - len(body)]):
        raise InvalidInput(f"the {what} must not contain control characters")
    if _BIDI_CONTROLS.intersection(body):
        raise InvalidInput(f"the {what} must not contain bidirectional controls (U+202A to U+202E, U+2066 to U+2069)")
    name = body.rstrip()
    if not 1 <= len(name) <= max_length:
        raise InvalidInput(f"the {what} must have 1 to {max_length} characters")
    return name


def is_email_address(email: str) -> bool:
    """Whether `email` may be an account's address: an '@', no spaces, at most 320 characters."""
    return (
        "@" in email
        and len(email) <= MAX_EMAIL
        and not any(ch.isspace() for ch in email)
        and is_free_text(email, multiline=False)
    )


def is_free_text(text: str, *, multiline: bool) -> bool:
    """Free text a request may carry: no control character (tab and line feed allowed where it
    is multi-line), no bidirectional control, no lone surrogate (the spec's free-text patterns)."""
    allowed = _MULTILINE_CONTROLS if multiline else frozenset()
    return not any(
        (unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed) or ch in _BIDI_CONTROLS for ch in text
    )


def is_storable(text: str) -> bool:
    """No control character (NUL among them) and no lone surrogate."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)
