"""The database: its engine, created in one place, and the two transactions built on it.

An app (or a command) makes one `Database` for its settings and owns it. It binds it to the
context of its work (`bound()`: each request, each background task), so that the data layer,
which opens its transactions with `reading()` and `writing()`, uses that app's database: two
apps in one process never share one. Everything the data layer's entry points call takes
the connection as a required keyword (`def insert_sessions(*, conn, batch)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from sessions_api.core import heavy_reads
from sessions_api.core import settings as settings_module
from sessions_api.core.settings import Settings


class Database:
    """One app's database: the engine, and what other modules keep per database in `state`
    (the hot reads' connections, the database threads' limiters), closed with it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = _create_engine(settings)
        # On SQLite a writing transaction takes the write lock up front (BEGIN IMMEDIATE), so it
        # waits on the busy timeout instead of failing when another writer got in first.
        self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        # Moves on at each dispose(): a connection kept outside the pool (core.compiled_reads)
        # that was opened in an earlier generation must be closed too.
        self.generation = 0
        self.state: dict[str, Any] = {}
        self._on_dispose: list[Callable[[], None]] = []

    @contextmanager
    def reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A connection for reads; its transaction is rolled back when it is returned. With
        `snapshot`, every statement of it sees the same snapshot: SQLite's read transactions
        always do; PostgreSQL's then run at REPEATABLE READ."""
        with self.engine.connect() as conn:
            if snapshot and conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            ends_by = heavy_reads.deadline()
            if ends_by is None:
                yield conn
                return
            with _time_limited(conn, ends_by):
                yield conn

    @contextmanager
    def writing(self, *, lock_timeout_ms: int | None = None) -> Iterator[Connection]:
        """A connection in one transaction, committed on success, rolled back on error.

        It waits at most `lock_timeout_ms` for a lock (by default the configured busy or lock
        timeout), then fails with an OperationalError, which the API answers with 503.
        """
        writer = self._write_engine
        if lock_timeout_ms is not None:
            writer = writer.execution_options(lock_timeout_ms=lock_timeout_ms)
        with writer.begin() as conn:
            yield conn

    def on_dispose(self, close: Callable[[], None]) -> None:
        """Call `close` whenever this database's connections are closed."""
        self._on_dispose.append(close)

    def dispose(self) -> None:
        """Close every connection (the engine opens new ones when next asked)."""
        self.generation += 1
        self.engine.dispose()
        for close in self._on_dispose:
            close()


# PostgreSQL's SQLSTATE for a statement cancelled, here by its statement_timeout.
_QUERY_CANCELED = "57014"


@contextmanager
def _time_limited(conn: Connection, ends_by: float) -> Iterator[None]:
    """Stop `conn`'s statements at the monotonic instant `ends_by`: a heavy read's time limit
    (core.heavy_reads). Past it, ReadTimeLimitExceeded instead of the driver's error."""
    limit = heavy_reads.report_timeout()
    left = ends_by - time.monotonic()
    if left <= 0:
        raise heavy_reads.ReadTimeLimitExceeded(limit)
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        raw: Any = conn.connection.dbapi_connection
        raw.set_progress_handler(lambda: time.monotonic() > ends_by, heavy_reads.SQLITE_PROGRESS_STEPS)
    else:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")
    try:
        yield
    except OperationalError as exc:
        interrupted = sqlite and time.monotonic() > ends_by
        if interrupted or getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED:
            raise heavy_reads.ReadTimeLimitExceeded(limit) from exc
        raise
    finally:
        if sqlite:
            raw.set_progress_handler(None, 0)


_bound: ContextVar[Database] = ContextVar("sessions_api_database")


def bind(database: Database) -> tuple[Token[Database], Token[Settings]]:
    """Make `database` (and its settings) the ones this context uses; undo with `unbind`."""
    return _bound.set(database), settings_module.bind(database.settings)


def unbind(tokens: tuple[Token[Database], Token[Settings]]) -> None:
    _bound.reset(tokens[0])
    settings_module.unbind(tokens[1])


@contextmanager
def bound(database: Database) -> Iterator[Database]:
    tokens = bind(database)
    try:
        yield database
    finally:
        unbind(tokens)


def configure(settings: Settings) -> Database:
    """A database for a command or a script: made and bound for the rest of this context. One
    that configure() made before in this context is closed (an app's is the app's to close)."""
    previous = _bound.get(None)
    if previous is not None and previous.state.get("configured"):
        previous.dispose()
    database = Database(settings)
    database.state["configured"] = True
    bind(database)
    return database


def current() -> Database:
    try:
        return _bound.get()
    except LookupError:
        raise RuntimeError("no database is bound here: this runs outside an app's or a command's work") from None


def engine() -> Engine:
    return current().engine


def generation() -> int:
    return current().generation


def dispose() -> None:
    """Close the bound database's connections, if one is bound."""
    database = _bound.get(None)
    if database is not None:
        database.dispose()


@contextmanager
def reading(*, snapshot: bool = False) -> Iterator[Connection]:
    """A connection for reads from the bound database (see `Database.reading`)."""
    with current().reading(snapshot=snapshot) as conn:
        yield conn


@contextmanager
def writing(*, lock_timeout_ms: int | None = None) -> Iterator[Connection]:
    """One transaction on the bound database (see `Database.writing`)."""
    with current().writing(lock_timeout_ms=lock_timeout_ms) as conn:
        yield conn


def _create_engine(settings: Settings) -> Engine:
    url = settings.database_url
    pool: dict[str, Any] = {
        # Errors name the statement, never the values bound to it (a webhook secret, a key hash).
        "hide_parameters": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
    }
    if settings.is_sqlite:
        return _sqlite_engine(url, settings, pool)
    if url.startswith("postgresql"):
        return _postgresql_engine(url, settings, pool)
    return create_engine(url, pool_pre_ping=True, **pool)


def postgresql_connect_args(settings: Settings) -> dict[str, Any]:
    """What every PostgreSQL connection is opened with: its time-outs, and UTC."""
    options = (
        f"-c statement_timeout={settings.db_statement_timeout_ms} "
        f"-c lock_timeout={settings.db_lock_timeout_ms} -c timezone=UTC"
    )
    return {"connect_timeout": settings.db_connect_timeout, "options": options}


def _postgresql_engine(url: str, settings: Settings, pool: dict[str, Any]) -> Engine:
    eng = create_engine(
        url,
        # A connection that died with a database restart is replaced, not handed out.
        pool_pre_ping=True,
        connect_args=postgresql_connect_args(settings),
        **pool,
    )

    @event.listens_for(eng, "begin")
    def _on_begin(conn: Connection) -> None:
        lock_timeout = conn.get_execution_options().get("lock_timeout_ms")
        if lock_timeout is not None:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout)}")

    return eng


def _sqlite_engine(url: str, settings: Settings, pool: dict[str, Any]) -> Engine:
    eng = create_engine(url, connect_args={"check_same_thread": False}, **pool)

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is broken).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.close()
        record.info["busy_timeout"] = int(settings.sqlite_busy_timeout_ms)

    @event.listens_for(eng, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        # The busy timeout is the connection's; a transaction that asks for its own sets it and
        # the next one that does not puts the default back.
        busy_timeout = int(options.get("lock_timeout_ms", settings.sqlite_busy_timeout_ms))
        if conn.info.get("busy_timeout") != busy_timeout:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={busy_timeout}")
            conn.info["busy_timeout"] = busy_timeout
        conn.exec_driver_sql(f"BEGIN {options.get('sqlite_begin', 'DEFERRED')}")

    return eng
