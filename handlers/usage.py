"""Handlers of the Usage tag: an organization's device usage, as JSON or as CSV (the CLI's
`sessions-api usage` shows the same rows)."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Iterator
from typing import Any

from sessions_api.core.timestamps import format_utc
from sessions_api.models import usage
from sessions_api.models.paging import instant

CSV = "text/csv"


def getUsage(
    organizationId: str,
    token_info: dict[str, Any],
    media_type: str,
    from_: str,
    to: str,
    granularity: str = "day",
    groupBy: str | None = None,
) -> dict[str, Any] | tuple[str, int, dict[str, str]]:
    start, end = instant(from_, "Query parameter 'from'"), instant(to, "Query parameter 'to'")
    assert start is not None and end is not None  # both are required
    rows = usage.report(token_info["principal"].organization_id, start, end, granularity, groupBy)
    if media_type == CSV:
        return usage_csv(rows, groupBy), 200, {"Content-Type": f"{CSV}; charset=utf-8"}
    return usage_body(rows, groupBy)


def usage_columns(group_by: str | None) -> list[str]:
    """The fields of a row, in order: the group's value under the groupBy name."""
    return [
        "start",
        "end",
        *([group_by] if group_by else []),
        "sessions",
        "deviceMinutes",
        "peakConcurrency",
        "artifactBytes",
    ]


def usage_body(rows: Iterable[usage.UsageRow], group_by: str | None) -> dict[str, Any]:
    """The JSON answer: deviceMinutes a number with at most two decimals."""
    columns = usage_columns(group_by)
    data = [dict(zip(columns, values, strict=True)) for values in _values(rows, group_by, _minutes_number)]
    return {"object": "list", "data": data}


def usage_csv(rows: Iterable[usage.UsageRow], group_by: str | None) -> str:
    """A header line of the JSON fields, then a line per row (minutes with two decimals)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(usage_columns(group_by))
    writer.writerows(_values(rows, group_by, _minutes_text))
    return out.getvalue()


def _values(rows: Iterable[usage.UsageRow], group_by: str | None, minutes: Any) -> Iterator[list[Any]]:
    text = functools.cache(format_utc)  # a report has few distinct bucket bounds
    for row in rows:
        group = [row.group] if group_by else []
        yield [
            text(row.start),
            text(row.end),
            *group,
            row.sessions,
            minutes(row),
            row.peak_concurrency,
            row.artifact_bytes,
        ]


def _minutes_number(row: usage.UsageRow) -> float:
    return row.device_centiminutes / 100


def _minutes_text(row: usage.UsageRow) -> str:
    hundredths = row.device_centiminutes
    return f"{hundredths // 100}.{hundredths % 100:02d}"
