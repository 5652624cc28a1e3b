"""Alembic environment on SQLModel.metadata. Batch mode lets every migration run on SQLite."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel

import sessions_api.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Alembic's own command line (`alembic revision --autogenerate`): DATABASE_URL, as everywhere.
    from sessions_api.core import db
    from sessions_api.core.settings import Settings

    with db.configure(Settings.from_env()).engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_migrations_online()
