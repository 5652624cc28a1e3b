"""RFC 3339 parsing and formatting, exact to the microsecond, always in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MICROSECOND = timedelta(microseconds=1)

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))"
)
_MIN_UTC = datetime.min.replace(tzinfo=UTC)
_MAX_UTC = datetime.max.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str, *, round_up: bool = False, clamp: bool = False) -> datetime:
    """Parse an RFC 3339 timestamp with an offset into an aware UTC datetime.

    Digits beyond microseconds are truncated, or rounded up when `round_up` is set: a
    "strictly before T" bound stays exact that way, since stored times are whole microseconds.
    With `clamp`, instants outside Python's datetime range become its first or last instant
    instead of an error. Raises ValueError for anything else, naive timestamps included.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 timestamp with a 'Z' or a UTC offset")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    fraction = fraction or ""
    microsecond = int(fraction[:6].ljust(6, "0"))
    extra = timedelta(seconds=1) if second == "60" else timedelta(0)  # a leap second
    if round_up and fraction[6:].strip("0"):
        extra += MICROSECOND
    offset = timedelta(0)
    if sign:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("the UTC offset is out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            min(int(second), 59),
            microsecond,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise ValueError(f"the date or time is out of range ({exc})") from None
    try:
        return local - offset + extra
    except OverflowError:
        if not clamp:
            raise ValueError("the instant is outside the years 1 to 9999") from None
        return _MAX_UTC if (extra - offset) > timedelta(0) else _MIN_UTC


def format_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with a 'Z' and exactly six fractional digits."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"
