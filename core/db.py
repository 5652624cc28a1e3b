"""The database engine, created in one place, and the two transactions built on it.

The data layer's public entry points open one of these; everything they call takes the
connection as a required keyword (`def insert_sessions(*, conn, batch)`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from sessions_api.core.settings import Settings

_engine: Engine | None = None
_write_engine: Engine | None = None
# Counts configure() and dispose() calls: connections opened outside the engine's pool
# (core.compiled_reads) are closed when it moves on.
_generation = 0


def configure(settings: Settings) -> Engine:
    """Create (or re-create) the process-wide engine for `settings.database_url`."""
    global _engine, _write_engine, _generation
    if _engine is not None:
        _engine.dispose()
    _generation += 1
    _engine = _create_engine(settings)
    # On SQLite a writing transaction takes the write lock up front (BEGIN IMMEDIATE), so it
    # waits on the busy timeout instead of failing when another writer got in first.
    _write_engine = _engine.execution_options(sqlite_begin="IMMEDIATE")
    return _engine


def dispose() -> None:
    """Close every pooled connection (the engine opens new ones when next asked)."""
    global _generation
    _generation += 1
    if _engine is not None:
        _engine.dispose()


def generation() -> int:
    """Changes whenever the engine's connections are closed: a connection kept outside the
    pool that was opened in another generation must be closed too."""
    return _generation


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("the database is not configured: call core.db.configure() first")
    return _engine


@contextmanager
def reading() -> Iterator[Connection]:
    """A connection for reads; its transaction is rolled back when it is returned."""
    with engine().connect() as conn:
        yield conn


@contextmanager
def writing(*, lock_timeout_ms: int | None = None) -> Iterator[Connection]:
    """A connection in one transaction, committed on success, rolled back on error.

    It waits at most `lock_timeout_ms` for a lock (by default the configured busy or lock
    timeout), then fails with an OperationalError, which the API answers with 503.
    """
    engine()
    assert _write_engine is not None
    writer = (
        _write_engine if lock_timeout_ms is None else _write_engine.execution_options(lock_timeout_ms=lock_timeout_ms)
    )
    with writer.begin() as conn:
        yield conn


def _create_engine(settings: Settings) -> Engine:
    url = settings.database_url
    pool: dict[str, Any] = {
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
