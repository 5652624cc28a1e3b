"""What the two peer servers (the FastAPI reference and the Starlette floor) share: the parts
of the Sessions API contract that are pure functions of their input.

None of this imports the product: the peers are independent implementations of the same
contract (`openapi/sessions.yaml`, docs/consumers/index.md), checked against the product by
`bench.check` before anything is measured.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

# `sapi_<16 hex lookup id>_<43 url-safe secret>`; the secret's SHA-256 is stored (hex).
KEY_FORMAT = re.compile(r"sapi_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
ORGANIZATION_HEADER = "x-organization-id"
LAST_USED_INTERVAL = timedelta(seconds=60)

UNAUTHENTICATED = {
    "error": {"code": "unauthenticated", "message": "Send a valid API key as 'Authorization: Bearer <key>'."}
}
FORBIDDEN = {
    "error": {"code": "forbidden", "message": "The selected organization does not exist or you are not a member of it."}
}
NOT_FOUND = {"error": {"code": "not_found", "message": "No session with this id exists in the selected organization."}}

UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))")
_MIN_UTC = datetime.min.replace(tzinfo=UTC)
_MAX_UTC = datetime.max.replace(tzinfo=UTC)


def invalid_request(message: str) -> dict:
    return {"error": {"code": "invalid_request", "message": message}}


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_before(text: str) -> datetime:
    """The `before` cursor: RFC 3339 with an offset, exact in UTC. Digits past the microsecond
    round up (stored instants are whole microseconds, so "strictly before" stays exact);
    instants outside datetime's range clamp to its ends. ValueError for anything else."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 timestamp with a 'Z' or a UTC offset")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    fraction = fraction or ""
    extra = timedelta(seconds=1) if second == "60" else timedelta(0)
    if fraction[6:].strip("0"):
        extra += timedelta(microseconds=1)
    offset = timedelta(0)
    if sign:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("the UTC offset is out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    local = datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        min(int(second), 59),
        int(fraction[:6].ljust(6, "0")),
        tzinfo=UTC,
    )
    try:
        return local - offset + extra
    except OverflowError:
        return _MAX_UTC if (extra - offset) > timedelta(0) else _MIN_UTC


def format_utc(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ`; a naive datetime is taken as UTC (SQLite stores UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def facts_json(name, build, tags: str, metadata: str, result, result_reason, artifact_count: int) -> dict:
    """A session's facts as the API shows them (tags and metadata are JSON text in the table),
    and the count of its available artifacts, kept on its row."""
    return {
        "name": name,
        "build": build,
        "tags": json.loads(tags),
        "metadata": json.loads(metadata),
        "result": result,
        "resultReason": result_reason,
        "artifactCount": artifact_count,
    }


def state_history(created: str, released: str | None, expires: str, queued: str | None) -> list[dict]:
    """A session's states from its row and its request (instants as the API's text): queued if
    it waited, started, then released, or expired when it ended at its expiresAt."""
    history = [{"state": "queued", "at": queued}] if queued is not None else []
    history.append({"state": "started", "at": created})
    if released is not None:
        history.append({"state": "released" if released < expires else "expired", "at": released})
    return history


def duration_seconds(created: datetime, released: datetime | None) -> float | None:
    return (released - created).total_seconds() if released is not None else None
