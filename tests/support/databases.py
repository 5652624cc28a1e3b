"""Test databases: migrated from zero with the product's own migrations, isolated per test."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, make_url, text
from sqlmodel import SQLModel

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import schema_version


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema, as `sessions-api db upgrade` does."""
    db.configure(Settings(database_url=url))
    schema_version.upgrade()
    db.engine().dispose()


def truncate_all(url: str) -> None:
    import sessions_api.models  # noqa: F401

    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables}"))
    engine.dispose()


class PostgresDatabases:
    """Creates databases on the server of TEST_DATABASE_URL from one migrated template, and
    drops every one of them at the end of the test session."""

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT")
        self._run = uuid.uuid4().hex[:10]
        self._created: list[str] = []
        self._template = self._new_name("template")
        self._execute(f'CREATE DATABASE "{self._template}"')
        self._created.append(self._template)
        migrate(self.url_of(self._template))

    def create(self) -> str:
        name = self._new_name("db")
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        self._created.append(name)
        return self.url_of(name)

    def create_empty(self) -> str:
        """A database with no schema at all (for `db upgrade` from zero)."""
        name = self._new_name("empty")
        self._execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return self.url_of(name)

    def url_of(self, name: str) -> str:
        return self._url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in reversed(self._created):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.dispose()

    def _new_name(self, kind: str) -> str:
        return f"sessions_test_{self._run}_{kind}_{len(self._created)}"

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(statement))
