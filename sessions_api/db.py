"""The database engine, created in one place, and the transactions built on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event
from sqlmodel import Session

from sessions_api.settings import Settings

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
        raise RuntimeError("the database is not configured: call sessions_api.db.configure()")
    return _engine


@contextmanager
def reading() -> Iterator[Connection]:
    """A read-only connection; its transaction is rolled back when it is returned."""
    with engine().connect() as conn:
        yield conn


@contextmanager
def writing() -> Iterator[Session]:
    """An ORM session in one transaction, committed on success, rolled back on error."""
    if _write_engine is None:
        engine()
    with Session(_write_engine, expire_on_commit=False) as session, session.begin():
        yield session


def _create_engine(settings: Settings) -> Engine:
    url = settings.database_url
    pool = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_seconds,
    }
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings, pool)
    if url.startswith("postgresql"):
        return create_engine(
            url,
            # A connection that died with a database restart is replaced, not handed out.
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": settings.db_connect_timeout_seconds,
                "options": f"-c statement_timeout={int(settings.db_statement_timeout_ms)} -c timezone=UTC",
            },
            **pool,
        )
    return create_engine(url, pool_pre_ping=True, **pool)


def _sqlite_engine(url: str, settings: Settings, pool: dict) -> Engine:
    eng = create_engine(url, connect_args={"check_same_thread": False}, **pool)

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
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
