"""The reads every request makes, compiled once and run on the database driver itself.

Which: the API key lookup behind every request (`models.api_keys`), getSession and the pages
of listSessions (`models.sessions`). Nothing else: every other read and every write goes
through the data layer's transactions (`db.reading()`, `db.writing()`).

SQLAlchemy Core writes them, as it writes all our SQL. But running a short indexed read
through a SQLAlchemy Connection costs more than the query: a pool checkout, a transaction
begun and rolled back, an execution context and a Result (half the CPU of a getSession,
BENCHMARKS.md). A `CompiledRead` compiles its statement once per dialect, binds the values
through the columns' own bind processors, and runs the SQL on a driver connection:

- SQLite: a connection of the calling thread's own, kept open (the event loop's: see
  core.db_threads for why reads may run there), in autocommit, so the one SELECT is its own
  read transaction and sees one committed state;
- PostgreSQL: psycopg's asyncio pool, in autocommit: one round trip, no thread. The pool
  belongs to the app's database and to the event loop it serves on: the app's lifespan
  opens and closes it. On a loop without one (an app called without its lifespan) the
  statement goes through the engine on the reads' threads, so that nothing is left open
  when that loop goes.

Both are kept per `db.Database` (in its `state`), never per process.

Rows are named tuples with the columns' result processors applied: by position or by name
(the columns' keys: label expressions), the values SQLAlchemy's Row would hold. Only single
SELECTs of a few indexed rows belong here; everything else goes through `db.reading()` and
`db.writing()`. Driver errors come
out as SQLAlchemy's (OperationalError: the API answers 503), like every other read's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import psycopg_pool
from sqlalchemy import ClauseElement, Dialect, Float, Select
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from sessions_api.core import db, heavy_reads


async def _on_threads(read: Callable[[Mapping[str, Any]], list[Any]], values: Mapping[str, Any]) -> list[Any]:
    # Imported here: db_threads imports the metrics, and `serve` must set up their
    # multiprocess directory before prometheus-client is first imported.
    from sessions_api.core import db_threads

    return await db_threads.read(read, values)


class CompiledRead:
    """One SELECT, compiled on first use for the configured database."""

    def __init__(self, statement: Select[Any]) -> None:
        self._statement = statement
        self._plans: dict[tuple[str, str], Plan] = {}

    async def all(self, values: Mapping[str, Any]) -> list[Any]:
        database = db.current()
        if heavy_reads.is_heavy():  # on the heavy reads' threads, within the time limit
            return await _on_threads(self._through_engine, values)
        plan = self._plan(database)
        if database.settings.is_sqlite:
            return plan.rows(_run_sqlite(database, plan.sql, plan.parameters(values)))
        pool = await _postgresql_pool(database)
        if pool is None:
            return await _on_threads(self._through_engine, values)
        return plan.rows(await _run_postgresql(pool, plan.sql, plan.parameters(values)))

    async def first(self, values: Mapping[str, Any]) -> Any | None:
        rows = await self.all(values)
        return rows[0] if rows else None

    def _through_engine(self, values: Mapping[str, Any]) -> list[Any]:
        with db.reading() as conn:
            return list(conn.execute(self._statement, values).all())

    def _plan(self, database: db.Database) -> Plan:
        dialect = database.engine.dialect
        key = (dialect.name, dialect.driver)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(self._statement, dialect)
        return plan


def driver_statement(statement: Select[Any], values: Mapping[str, Any], dialect: Dialect) -> tuple[str, Any]:
    """The SQL and the parameters a compiled read of `statement` gives the driver (for
    `EXPLAIN`: tests read the plans of exactly what runs)."""
    plan = Plan(statement, dialect)
    return plan.sql, plan.parameters(values)


class Plan:
    """A statement compiled for one dialect: its SQL, how values are bound, how rows are made
    (also core.prepared's, for the write path)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a compiled statement binds every value as a parameter, rendered once")
        self.sql = compiled.string
        self._construct = compiled.construct_params
        self._order = tuple(compiled.positiontup or ()) if dialect.positional else None
        self._binders = [
            (name, process)
            for name, parameter in compiled.binds.items()
            if (process := parameter.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        # A SELECT's columns, or RETURNING's; none for other statements (text, plain DML).
        exported = getattr(statement, "exported_columns", None)
        columns = list(exported) if exported is not None else []
        self._row: Any = namedtuple("Row", exported.keys() if exported is not None else [])  # type: ignore[misc]
        self._converters = [
            (index, convert)
            for index, column in enumerate(columns)
            if (convert := _result_processor(column.type, dialect)) is not None
        ]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        bound = self._construct(values)
        for name, process in self._binders:
            bound[name] = process(bound[name])
        return bound if self._order is None else tuple(bound[name] for name in self._order)

    def rows(self, raw: Sequence[tuple[Any, ...]]) -> list[Any]:
        make = self._row._make
        if not self._converters:
            return [make(values) for values in raw]
        converted = []
        for values in raw:
            row = list(values)
            for index, process in self._converters:
                row[index] = process(row[index])
            converted.append(make(row))
        return converted


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """How the driver's value of a column becomes SQLAlchemy's. Without the cursor's type code,
    psycopg's numeric types have none to choose: a float column comes back a float already."""
    try:
        return type_.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, InvalidRequestError):
        if isinstance(type_, Float):
            return None
        raise


@dataclass
class _Kept:
    """What a database keeps for its hot reads (in `Database.state`)."""

    # SQLite: one connection per thread, opened through the engine (its pragmas, WAL) and taken
    # out of its pool; closed when the engine's connections are (its generation moves on).
    thread: threading.local = field(default_factory=threading.local)
    opened: list[tuple[int, sqlite3.Connection]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # PostgreSQL: a pool per event loop the app serves on (connections belong to the loop that
    # opened them): opened by open_pool(), closed by close_pool(), renewed with the generation.
    pools: dict[asyncio.AbstractEventLoop, tuple[int, asyncio.Task[psycopg_pool.AsyncConnectionPool]]] = field(
        default_factory=dict
    )


def _kept(database: db.Database) -> _Kept:
    kept: _Kept | None = database.state.get(__name__)
    if kept is None:
        kept = database.state[__name__] = _Kept()
        database.on_dispose(lambda: _close_stale_sqlite(kept, database.generation))
    return kept


def _run_sqlite(database: db.Database, sql: str, parameters: Any) -> list[Any]:
    try:
        return _sqlite_connection(database).execute(sql, parameters).fetchall()
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error, hide_parameters=True) from exc


def _sqlite_connection(database: db.Database) -> sqlite3.Connection:
    kept, generation = _kept(database), database.generation
    if getattr(kept.thread, "generation", None) != generation:
        _close_stale_sqlite(kept, generation)
        pooled = database.engine.raw_connection()
        opened: sqlite3.Connection = pooled.driver_connection  # type: ignore[assignment]
        pooled.detach()
        with kept.lock:
            kept.opened.append((generation, opened))
        kept.thread.connection, kept.thread.generation = opened, generation
    connection: sqlite3.Connection = kept.thread.connection
    return connection


def _close_stale_sqlite(kept: _Kept, generation: int) -> None:
    with kept.lock:
        stale = [connection for opened, connection in kept.opened if opened != generation]
        kept.opened[:] = [(opened, connection) for opened, connection in kept.opened if opened == generation]
    for connection in stale:
        connection.close()


async def open_pool(database: db.Database) -> None:
    """Give this event loop a PostgreSQL pool for the hot reads of `database` (the app's
    lifespan starts)."""
    loop = asyncio.get_running_loop()
    pools = _kept(database).pools
    if not database.settings.is_sqlite and loop not in pools:
        pools[loop] = (database.generation, loop.create_task(_open_pool(database)))


async def _run_postgresql(pool: psycopg_pool.AsyncConnectionPool, sql: str, parameters: Any) -> list[Any]:
    for attempt in (1, 2):
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            async with pool.connection() as connection:
                cursor = await connection.execute(sql, parameters)
                return await cursor.fetchall()
        except psycopg_pool.PoolTimeout as exc:
            raise PoolTimeout(str(exc)) from exc
        except psycopg.OperationalError as exc:
            # A connection the server closed (a restart) is dropped by the pool: try another once.
            if attempt == 1 and connection is not None and connection.broken:
                continue
            raise DBAPIError.instance(sql, parameters, exc, psycopg.Error, hide_parameters=True) from exc
        except psycopg.Error as exc:
            raise DBAPIError.instance(sql, parameters, exc, psycopg.Error, hide_parameters=True) from exc
    raise AssertionError("the loop above returns or raises")


async def _postgresql_pool(database: db.Database) -> psycopg_pool.AsyncConnectionPool | None:
    """This loop's pool (None if open_pool() was not called on it)."""
    loop = asyncio.get_running_loop()
    pools = _kept(database).pools
    known = pools.get(loop)
    if known is None:
        return None
    if known[0] != database.generation:
        stale = known[1]
        known = pools[loop] = (database.generation, loop.create_task(_open_pool(database)))
        await (await stale).close()
    return await known[1]


async def _open_pool(database: db.Database) -> psycopg_pool.AsyncConnectionPool:
    config = database.settings
    url = database.engine.url.set(drivername="postgresql")
    pool = psycopg_pool.AsyncConnectionPool(
        url.render_as_string(hide_password=False),
        min_size=1,
        max_size=config.db_pool_size,
        timeout=config.db_pool_timeout,
        # The pool reconnects in the background with a doubling backoff, by default for five
        # minutes: after an outage of a minute its next try could be half a minute away. Giving
        # up after a pool timeout lets the next request start a fresh attempt at once.
        reconnect_timeout=config.db_pool_timeout,
        kwargs={"autocommit": True, **db.postgresql_connect_args(config)},
        open=False,
        name="compiled-reads",
    )
    await pool.open()
    return pool


async def close_pool(database: db.Database) -> None:
    """Close this event loop's PostgreSQL pool of `database`, if it has one (the lifespan ends)."""
    known = _kept(database).pools.pop(asyncio.get_running_loop(), None)
    if known is not None:
        await (await known[1]).close()
