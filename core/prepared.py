"""The write path's statements, compiled once and run on their transaction's own driver
connection.

A start and a release run some twenty short statements. Built and executed through a
SQLAlchemy Connection, each costs ~180 µs of Python before the database sees it (the
expression built, its cache key computed, an execution context and a Result made), which
was most of a start's CPU (BENCHMARKS.md, round four). A `Prepared` statement is written
once with bind parameters (SQLAlchemy Core, as all our SQL), compiled once per dialect
(core.compiled_reads' plan: the columns' own bind and result processors), and run on the
DBAPI connection of the caller's transaction: the same transaction, ~8 µs of overhead.

Driver errors come out as SQLAlchemy's (IntegrityError for the retries that look for it,
OperationalError for the 503s), and a connection the driver reports as lost is invalidated
as SQLAlchemy would, so that the pool never hands it out again. Statements run this way are
not seen by the engine's `before_cursor_execute` listeners.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ClauseElement, Connection, Table, bindparam, insert
from sqlalchemy.exc import DBAPIError

from sessions_api.core.compiled_reads import Plan


class Prepared:
    """One statement whose values are all bind parameters."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._plans: dict[tuple[str, str], Plan] = {}

    def rows(self, conn: Connection, values: Mapping[str, Any] | None = None) -> list[Any]:
        plan = self._plan(conn)
        cursor = _run(conn, plan.sql, plan.parameters(values or {}))
        return plan.rows(cursor.fetchall()) if cursor.description is not None else []

    def first(self, conn: Connection, values: Mapping[str, Any] | None = None) -> Any | None:
        rows = self.rows(conn, values)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, values: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, values)
        return row[0] if row is not None else None

    def execute(self, conn: Connection, values: Mapping[str, Any] | None = None) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        plan = self._plan(conn)
        return int(_run(conn, plan.sql, plan.parameters(values or {})).rowcount)

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        plan = self._plan(conn)
        _run(conn, plan.sql, [plan.parameters(row) for row in rows], many=True)

    def _plan(self, conn: Connection) -> Plan:
        dialect = conn.dialect
        key = (dialect.name, dialect.driver)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(self._statement, dialect)
        return plan


@functools.lru_cache(maxsize=64)
def inserting(table: Table, columns: tuple[str, ...]) -> Prepared:
    """INSERT of exactly these columns into `table` (the others take their server defaults)."""
    return Prepared(insert(table).values({name: bindparam(name, type_=table.c[name].type) for name in columns}))


def insert_rows(conn: Connection, model: type[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (each with the same columns) into the table of `model` (a SQLModel table);
    a column left out takes its constant default (`artifact_count` 0), which the driver is not
    given otherwise."""
    if not rows:
        return
    table: Table = model.__table__
    defaults = _constant_defaults(table, tuple(rows[0]))
    if defaults:
        rows = [{**defaults, **row} for row in rows]
    inserting(table, tuple(rows[0])).execute_many(conn, rows)


@functools.lru_cache(maxsize=64)
def _constant_defaults(table: Table, columns: tuple[str, ...]) -> dict[str, Any]:
    defaults = {}
    for column in table.c:
        if column.name in columns or column.default is None:
            continue
        if not column.default.is_scalar:  # made per row (uuid4, utcnow): the caller gives it
            raise ValueError(f"{table.name}.{column.name} must be given: its default is made per row")
        defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    return defaults


def _run(conn: Connection, sql: str, parameters: Any, many: bool = False) -> Any:
    fairy = conn.connection  # the transaction's pooled connection
    dbapi = conn.dialect.loaded_dbapi
    cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, dbapi.Error, hide_parameters=True, connection_invalidated=lost, dialect=conn.dialect
        ) from exc
    return cursor
