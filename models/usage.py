"""Usage: where an organization's device time went, bucket by bucket (getUsage, `sessions-api usage`).

One statement sweeps the sessions that ran in the range in time order, per group: each start
raises the level of concurrency by one, each end lowers it, and a mark at every bucket's start
cuts the sweep into buckets. The time between two consecutive points times the level between
them is device time, so a session's time is split exactly between the buckets it spans, and
the highest level within a bucket is its peak concurrency. Everything is counted in whole
microseconds and rounded only when shown.

The sessions are read from the (organization, created_at) index, from `from` minus the
longest any ended session of the organization lasted (`Organization.longest_session_seconds`,
raised as sessions end or are imported ended) up to `to`, and the live ones from their
partial index (never more than the fleet has devices): the cost follows the range, not the
history. Both reads see one snapshot (`db.reading(snapshot=True)`): a session that ends
meanwhile is found by one of them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Uuid, bindparam, text, update
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.prepared import Prepared
from sessions_api.core.timestamps import utcnow
from sessions_api.models.errors import NO_SUCH_ORGANIZATION, InvalidInput, NotFound
from sessions_api.models.tables import Organization
from sessions_api.models.types import UTCDateTime

MAX_BUCKETS = 1000
MAX_ROWS = 10_000  # with groupBy: buckets times the values that ran in each
GRANULARITIES = ("hour", "day", "month")
# What a report may be grouped by: the API's name, and the column holding it.
GROUP_COLUMNS = {"platform": "sessions.platform", "user": "sessions.user_id", "deviceType": "devices.type"}

_POSTGRESQL_SORT_MEMORY = "64MB"  # per report, for its one sort (PostgreSQL's default is 4MB)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class UsageRow:
    start: datetime
    end: datetime
    group: str | None  # the groupBy value; None without groupBy
    sessions: int  # started in the bucket
    device_microseconds: int
    peak_concurrency: int
    artifact_bytes: int = 0  # of artifacts that became available in the bucket

    @property
    def device_centiminutes(self) -> int:
        """Device minutes in hundredths, rounded half up (what the API shows with two decimals)."""
        return (self.device_microseconds * 100 + 30_000_000) // 60_000_000


def buckets(start: datetime, end: datetime, granularity: str) -> list[tuple[datetime, datetime]]:
    """The UTC calendar's hours, days or months between `start` and `end`, the first and the
    last cut at them; InvalidInput for an empty range or one of more than MAX_BUCKETS."""
    if granularity not in GRANULARITIES:
        raise InvalidInput(f"granularity must be one of {', '.join(GRANULARITIES)}.")
    if start >= end:
        raise InvalidInput("'to' must come after 'from'.")
    cuts = [start]
    boundary = _calendar_start(start, granularity)
    while cuts[-1] < end:
        if len(cuts) > MAX_BUCKETS:
            raise InvalidInput(
                f"The range needs more than {MAX_BUCKETS} {granularity} buckets: "
                "ask for a shorter range or a coarser granularity."
            )
        boundary = _next_boundary(boundary, granularity)
        cuts.append(min(boundary, end))
    return list(zip(cuts, cuts[1:], strict=False))


def _calendar_start(moment: datetime, granularity: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return moment
    moment = moment.replace(hour=0)
    return moment if granularity == "day" else moment.replace(day=1)


def _next_boundary(boundary: datetime, granularity: str) -> datetime:
    """The calendar boundary after `boundary` (the last instant datetime holds past 9999)."""
    try:
        if granularity == "month":
            if boundary.month == 12:
                return boundary.replace(year=boundary.year + 1, month=1)
            return boundary.replace(month=boundary.month + 1)
        return boundary + (timedelta(hours=1) if granularity == "hour" else timedelta(days=1))
    except (OverflowError, ValueError):
        return _LAST


def report(
    organization_id: uuid.UUID,
    start: datetime,
    end: datetime,
    granularity: str = "day",
    group_by: str | None = None,
    *,
    now: datetime | None = None,
) -> list[UsageRow]:
    """The organization's usage in [start, end): without `group_by` one row per bucket, with
    it one row per bucket and value that ran or started a session, in time then value order."""
    cuts = buckets(start, end, granularity)
    with db.reading(snapshot=True) as conn:
        if conn.dialect.name == "postgresql":
            # The sweep sorts every start and end of the range: in memory, not in temporary files;
            # and it runs once, so compiling its expressions (JIT) costs more than it saves.
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{_POSTGRESQL_SORT_MEMORY}'")
            conn.exec_driver_sql("SET LOCAL jit = off")
        longest = conn.execute(
            text("SELECT longest_session_seconds FROM organizations WHERE id = :org").bindparams(
                bindparam("org", type_=Uuid())
            ),
            {"org": organization_id},
        ).scalar_one_or_none()
        if longest is None:
            raise NotFound(NO_SUCH_ORGANIZATION)
        swept = _sweep(conn, organization_id, cuts, longest, group_by, now or utcnow())
        stored = _artifact_bytes(conn, organization_id, cuts, group_by) if len(swept) <= MAX_ROWS else []
    values: dict[Any, str | None] = {}  # each group's value as the API names it, made once
    by_key = {
        (k, _group_value(group, group_by, values)): UsageRow(
            cuts[k][0], cuts[k][1], _group_value(group, group_by, values), int(started), int(used), int(peak)
        )
        for k, group, started, used, peak in swept
    }
    for k, group, total in stored:
        key = (k, _group_value(group, group_by, values))
        ran = by_key.get(key) or UsageRow(cuts[k][0], cuts[k][1], key[1], 0, 0, 0)
        by_key[key] = replace(ran, artifact_bytes=int(total))
    if len(by_key) > MAX_ROWS:  # each statement reads one row more, never all of them
        raise InvalidInput(
            f"The report would hold more than {MAX_ROWS} rows: ask for fewer buckets "
            "(a shorter range or a coarser granularity)."
        )
    rows = list(by_key.values())
    if group_by is None:  # every bucket has a row, zeros where nothing ran
        seen = {row.start for row in rows}
        rows += [UsageRow(s, e, None, 0, 0, 0) for s, e in cuts if s not in seen]
    return sorted(rows, key=lambda row: (row.start, row.group or ""))


def _group_value(value: Any, group_by: str | None, made: dict[Any, str | None]) -> str | None:
    if value not in made:
        if group_by is None:
            made[value] = None
        else:
            made[value] = str(uuid.UUID(str(value))) if group_by == "user" else str(value)
    return made[value]


def _sweep(
    conn: Connection,
    organization_id: uuid.UUID,
    cuts: list[tuple[datetime, datetime]],
    longest_seconds: int,
    group_by: str | None,
    now: datetime,
) -> list[Any]:
    start, end = cuts[0][0], cuts[-1][1]
    dialect = conn.dialect.name
    values = {
        "org": organization_id,
        "lower": _minus(start, longest_seconds),
        "upper": end,
        "from_us": _micros(start),
        "to_us": _micros(end),
        "now_us": _micros(now),
        **{f"b{k}": _micros(s) for k, (s, _e) in enumerate(cuts)},
    }
    statement = text(_statement(dialect, len(cuts), group_by)).bindparams(
        bindparam("org", type_=Uuid()),
        bindparam("lower", type_=UTCDateTime()),
        bindparam("upper", type_=UTCDateTime()),
    )
    return list(conn.execute(statement, values).all())


def _artifact_bytes(
    conn: Connection, organization_id: uuid.UUID, cuts: list[tuple[datetime, datetime]], group_by: str | None
) -> list[Any]:
    """(bucket, group, bytes) of the artifacts that became available in each bucket (expired
    ones too: they were kept), read from the (organization, available_at) index."""
    dialect = conn.dialect.name
    group = "0" if group_by is None else GROUP_COLUMNS[group_by]
    joins = "JOIN sessions ON sessions.id = artifacts.session_id" if group_by is not None else ""
    if group_by == "deviceType":
        joins += " JOIN devices ON devices.id = sessions.device_id"
    available = _MICROS[dialect].format(column="artifacts.available_at")
    bounds = ", ".join(f"({k}, CAST(:s{k} AS BIGINT), CAST(:e{k} AS BIGINT))" for k in range(len(cuts)))
    statement = text(f"""
WITH bounds (k, s, e) AS (VALUES {bounds}),
stored AS (
    SELECT {group} AS grp, {available} AS t, artifacts.size AS size
    FROM artifacts {joins}
    WHERE artifacts.organization_id = :org AND artifacts.available_at >= :lower AND artifacts.available_at < :upper
      AND artifacts.status IN ('available', 'expired')
)
SELECT b.k, stored.grp, SUM(stored.size)
FROM stored JOIN bounds b ON stored.t >= b.s AND stored.t < b.e
GROUP BY b.k, stored.grp
LIMIT {MAX_ROWS + 1}
""").bindparams(
        bindparam("org", type_=Uuid()), bindparam("lower", type_=UTCDateTime()), bindparam("upper", type_=UTCDateTime())
    )
    values = {
        "org": organization_id,
        "lower": cuts[0][0],
        "upper": cuts[-1][1],
        **{f"s{k}": _micros(s) for k, (s, _e) in enumerate(cuts)},
        **{f"e{k}": _micros(e) for k, (_s, e) in enumerate(cuts)},
    }
    return list(conn.execute(statement, values).all())


def _statement(dialect: str, bucket_count: int, group_by: str | None) -> str:
    micros = _MICROS[dialect]
    least, greatest = ("MIN", "MAX") if dialect == "sqlite" else ("LEAST", "GREATEST")
    # Ungrouped, every session is in one group (0). Text is compared byte by byte: the sort
    # needs an order, not the database's collation (much slower on PostgreSQL).
    group = "0" if group_by is None else GROUP_COLUMNS[group_by]
    if group_by in ("platform", "deviceType") and dialect == "postgresql":
        group = f'{group} COLLATE "C"'
    join = "JOIN devices ON devices.id = sessions.device_id" if group_by == "deviceType" else ""
    created, released, expires = (
        micros.format(column=f"sessions.{name}") for name in ("created_at", "released_at", "expires_at")
    )
    # A live session counts up to now, or up to its expiry should the sweep not have ended it yet.
    columns = (
        f"{group} AS grp, {created} AS created_us, "
        f"{least}(COALESCE({released}, {least}({expires}, :now_us)), :to_us) AS ended_us"
    )
    # The bucket starts, numbered: the marks the sweep is cut at.
    bounds = ", ".join(f"({k}, CAST(:b{k} AS BIGINT))" for k in range(bucket_count))
    return f"""
WITH ran AS (
    SELECT grp, created_us, {greatest}(created_us, :from_us) AS s, ended_us AS e FROM (
        SELECT {columns}
        FROM sessions {join}
        WHERE sessions.organization_id = :org AND sessions.created_at >= :lower AND sessions.created_at < :upper
        UNION ALL
        SELECT {columns}
        FROM sessions {join}
        WHERE sessions.organization_id = :org AND sessions.released_at IS NULL AND sessions.created_at < :lower
    ) AS candidates
    WHERE ended_us > {greatest}(created_us, :from_us)
),
bounds (k, t) AS (VALUES {bounds}),
points AS (
    SELECT grp, s AS t, 1 AS d, CASE WHEN created_us >= :from_us THEN 1 ELSE 0 END AS started,
           CAST(NULL AS INTEGER) AS k
    FROM ran
    UNION ALL SELECT grp, e, -1, 0, NULL FROM ran
    UNION ALL SELECT g.grp, b.t, 0, 0, b.k FROM (SELECT DISTINCT grp FROM ran) AS g CROSS JOIN bounds b
),
swept AS (
    SELECT grp, t, started,
           SUM(d) OVER w AS level,
           MAX(k) OVER w AS bucket,
           LEAD(t) OVER w AS next_t
    FROM points
    WINDOW w AS (PARTITION BY grp ORDER BY t, d ROWS UNBOUNDED PRECEDING)
)
SELECT bucket, grp, SUM(started), SUM(level * (COALESCE(next_t, t) - t)), MAX(level)
FROM swept
GROUP BY bucket, grp
HAVING SUM(started) > 0 OR SUM(level * (COALESCE(next_t, t) - t)) > 0 OR MAX(level) > 0
LIMIT {MAX_ROWS + 1}
"""


# An instant column as whole microseconds since 1970 (SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff').
_MICROS = {
    "sqlite": "(CAST(strftime('%s', {column}) AS INTEGER) * 1000000 + CAST(substr({column}, 21, 6) AS INTEGER))",
    "postgresql": "CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)",
}


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _minus(moment: datetime, seconds: int) -> datetime:
    return moment - timedelta(seconds=seconds) if moment - _FIRST > timedelta(seconds=seconds) else _FIRST


def note_lengths(*, conn: Connection, lengths: Iterable[tuple[uuid.UUID, timedelta]]) -> None:
    """Raise each organization's longest session length (whole seconds, rounded up) to cover
    these ended sessions: how far back from its range a report reads (see the module's
    docstring). Called in the transaction that ends them."""
    longest: dict[uuid.UUID, int] = {}
    for organization_id, length in lengths:
        seconds = math.ceil(length.total_seconds())
        if seconds > longest.get(organization_id, 0):
            longest[organization_id] = seconds
    for organization_id, seconds in sorted(longest.items()):
        # Writes (and locks the row) only when the length is a new longest: rarely.
        _RAISE_LONGEST.execute(conn, {"organization_id": organization_id, "seconds": seconds})


_RAISE_LONGEST = Prepared(
    update(Organization)
    .where(
        col(Organization.id) == bindparam("organization_id"),
        col(Organization.longest_session_seconds) < bindparam("seconds"),
    )
    .values(longest_session_seconds=bindparam("seconds"))
)
