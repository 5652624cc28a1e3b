"""Columns read as the API writes them: ids and instants rendered as text by the database.

A page of 100 sessions holds 400 ids and 300 instants. Read through the column types, each
becomes a Python object (a UUID, an aware datetime) only to be turned back into text for
the JSON; rendered by the database they arrive as the final strings, and reading a page
costs about half as much (BENCHMARKS.md, "What each change bought").

On SQLite, `Uuid` is stored as 32 lowercase hex digits and `UTCDateTime` as the fixed-width
text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (SQLAlchemy's storage formats), so both are
reshaped by string functions; PostgreSQL formats its native types.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class uuid_text(FunctionElement):  # noqa: N801  (used like a SQL function)
    """A UUID column as its canonical text: 8-4-4-4-12 lowercase hex digits."""

    type = String()
    inherit_cache = True


class rfc3339_text(FunctionElement):  # noqa: N801
    """A `UTCDateTime` column as RFC 3339 in UTC with six fractional digits and a 'Z'
    (what `sessions_api.timestamps.format_utc` writes); NULL stays NULL."""

    type = String()
    inherit_cache = True


@compiles(uuid_text, "sqlite")
def _uuid_text_sqlite(element, compiler, **kw) -> str:
    column = compiler.process(element.clauses, **kw)
    parts = (f"substr({column}, {start}, {length})" for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12)))
    return " || '-' || ".join(parts)


@compiles(uuid_text, "postgresql")
def _uuid_text_postgresql(element, compiler, **kw) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(rfc3339_text, "sqlite")
def _rfc3339_text_sqlite(element, compiler, **kw) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"substr({column}, 1, 10) || 'T' || substr({column}, 12, 15) || 'Z'"


@compiles(rfc3339_text, "postgresql")
def _rfc3339_text_postgresql(element, compiler, **kw) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
