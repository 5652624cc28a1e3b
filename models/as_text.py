"""Columns read as the API writes them: ids and instants as their final text.

A page of 100 sessions holds 400 ids and 300 instants. Read through the column types, each
becomes a Python object (a UUID, an aware datetime) only to be turned back into text for
the JSON; read as text, a page costs less CPU (BENCHMARKS.md, "What each change bought").

On PostgreSQL the database formats its native types. On SQLite, `Uuid` is stored as 32
lowercase hex digits and `UTCDateTime` as the fixed-width text 'YYYY-MM-DD HH:MM:SS.ffffff'
in UTC (SQLAlchemy's storage formats); the stored text is read as it is and reshaped by
slicing as rows are read, which costs less than SQLite's string functions (measured with the
sqlite3 driver alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Dialect, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


def _uuid_from_hex(stored: str | None) -> str | None:
    if stored is None:
        return None
    return f"{stored[:8]}-{stored[8:12]}-{stored[12:16]}-{stored[16:20]}-{stored[20:]}"


def _rfc3339_from_stored(stored: str | None) -> str | None:
    if stored is None:
        return None
    return f"{stored[:10]}T{stored[11:]}Z"


class _StoredText(String):
    """Text the database hands over as it is; on SQLite reshaped by `reshape` as rows are read."""

    reshape: Callable[[str | None], str | None] | None = None

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        return type(self).reshape if dialect.name == "sqlite" else None


class _UuidText(_StoredText):
    reshape = staticmethod(_uuid_from_hex)


class _Rfc3339Text(_StoredText):
    reshape = staticmethod(_rfc3339_from_stored)


class uuid_text(FunctionElement[str]):  # noqa: N801  (used like a SQL function)
    """A UUID column as its canonical text: 8-4-4-4-12 lowercase hex digits."""

    type = _UuidText()
    inherit_cache = True


class rfc3339_text(FunctionElement[str]):  # noqa: N801  (used like a SQL function)
    """A `UTCDateTime` column as RFC 3339 in UTC with six fractional digits and a 'Z'
    (what `sessions_api.core.timestamps.format_utc` writes); NULL stays NULL."""

    type = _Rfc3339Text()
    inherit_cache = True


@compiles(uuid_text, "sqlite")
@compiles(rfc3339_text, "sqlite")
def _stored_text_sqlite(element: FunctionElement[str], compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(uuid_text, "postgresql")
def _uuid_text_postgresql(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(rfc3339_text, "postgresql")
def _rfc3339_text_postgresql(element: rfc3339_text, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
