"""Handlers of the Usage tag: an organization's device usage, as JSON or as CSV (the CLI's
`sessions-api usage` shows the same rows)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
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
    return {"object": "list", "data": [usage_json(row, groupBy) for row in rows]}


def usage_columns(group_by: str | None) -> list[str]:
    """The fields of a row, in order: the group's value under the groupBy name."""
    return ["start", "end", *([group_by] if group_by else []), "sessions", "deviceMinutes", "peakConcurrency"]


def usage_json(row: usage.UsageRow, group_by: str | None) -> dict[str, Any]:
    return dict(zip(usage_columns(group_by), _values(row, group_by, float), strict=True))


def usage_csv(rows: Iterable[usage.UsageRow], group_by: str | None) -> str:
    """A header line of the JSON fields, then a line per row (minutes with two decimals)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(usage_columns(group_by))
    writer.writerows(_values(row, group_by, str) for row in rows)
    return out.getvalue()


def _values(row: usage.UsageRow, group_by: str | None, minutes: type[float] | type[str]) -> list[Any]:
    group = [row.group] if group_by else []
    return [
        format_utc(row.start),
        format_utc(row.end),
        *group,
        row.sessions,
        minutes(row.device_minutes),
        row.peak_concurrency,
    ]
