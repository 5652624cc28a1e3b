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


def configure(settings: Settings) -> Engine:
    """Create (or re-create) the process-wide engine for `settings.database_url`."""
    global _engine, _write_engine
    if _engine is not None:
        _engine.dispose()
    _engine = _create_engine(settings)
    # On SQLite a writing transaction takes the write lock up front (BEGIN IMMEDIATE), so it
    # waits on the busy timeout instead of failing when another writer got in first.
    _write_engine = _engine.execution_options(sqlite_begin="IMMEDIATE")
    return _engine


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
def writing() -> Iterator[Connection]:
    """A connection in one transaction, committed on success, rolled back on error."""
    engine()
    assert _write_engine is not None
    with _write_engine.begin() as conn:
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
        return create_engine(
            url,
            # A connection that died with a database restart is replaced, not handed out.
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": settings.db_connect_timeout,
                "options": f"-c statement_timeout={settings.db_statement_timeout_ms} -c timezone=UTC",
            },
            **pool,
        )
    return create_engine(url, pool_pre_ping=True, **pool)


def _sqlite_engine(url: str, settings: Settings, pool: dict[str, Any]) -> Engine:
    eng = create_engine(url, connect_args={"check_same_thread": False}, **pool)

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is broken).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

    return eng
