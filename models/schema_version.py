"""The database schema's version: Alembic migrations, applied by `sessions-api db upgrade`.

The migrations ship in the package (`sessions_api.migrations`); their configuration is built
here, so an installed server needs no alembic.ini (the repository's is for Alembic's own
command line, to write new revisions).
"""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from sessions_api.core import db, resources


class SchemaBehind(Exception):
    """The database holds an older schema than this code needs."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.migrations_path()))
    return config


@functools.cache
def head_revision() -> str:
    """The newest migration this code ships (read once: the package does not change)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision() -> str | None:
    with db.engine().connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def behind_by() -> str | None:
    """Why the schema is not the one this code needs, or None when it is."""
    current, head = current_revision(), head_revision()
    if current == head:
        return None
    return f"the database schema is at {current or 'no migration record'}, this version needs {head}"


def upgrade() -> tuple[str | None, str]:
    """Apply every pending migration; returns (revision before, revision after)."""
    before = current_revision()
    config = alembic_config()
    with db.engine().connect() as conn:
        # SQLite alters a table by copying it; with foreign keys on, dropping the old copy of a
        # table others reference fails (or deletes). They are off while migrations run (only
        # outside a transaction does SQLite take the pragma), and checked before the commit.
        driver = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if driver is not None:
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                if driver is not None and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows whose foreign keys point nowhere")
                refresh_statistics(conn)  # new indexes get theirs
        finally:
            if driver is not None:
                driver.execute("PRAGMA foreign_keys=ON")
    return before, head_revision()


# Rows SQLite's ANALYZE reads per index: estimates good enough to choose between indexes, in
# milliseconds whatever the table's size.
_SQLITE_ANALYSIS_LIMIT = 1000


def refresh_statistics(conn: Connection) -> None:
    """Gather the planner's statistics, in `conn`'s transaction.

    SQLite keeps none unless told (and without them may read a page of live sessions through
    an index of the whole history); PostgreSQL's autovacuum keeps them, but not yet for what
    a migration or an import has just written."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA analysis_limit={_SQLITE_ANALYSIS_LIMIT}")
        conn.exec_driver_sql("ANALYZE")
    else:
        conn.exec_driver_sql("ANALYZE")


def refresh_statistics_now() -> None:
    """refresh_statistics in a transaction of its own (the server does it every
    `statistics_refresh_seconds` on SQLite, where nothing else would)."""
    with db.writing() as conn:
        refresh_statistics(conn)


def ensure_current(*, migrate: bool = False) -> None:
    """Make sure the schema is the one this code needs.

    An empty database gets the schema. One whose schema is behind is migrated only when
    `migrate` is set; otherwise SchemaBehind says to run the upgrade.
    """
    reason = behind_by()
    if reason is None:
        return
    if migrate or (current_revision() is None and _is_empty()):
        upgrade()
        return
    raise SchemaBehind(f"{reason}: run 'sessions-api db upgrade' first")


def _is_empty() -> bool:
    with db.engine().connect() as conn:
        return not inspect(conn).get_table_names()
