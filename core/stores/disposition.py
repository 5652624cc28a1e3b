"""`Content-Disposition: attachment` with a file name, as RFC 6266 says: an ASCII `filename`
for old clients and the exact name as `filename*` (RFC 8187, UTF-8)."""

from __future__ import annotations

from urllib.parse import quote


def attachment(name: str) -> str:
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
