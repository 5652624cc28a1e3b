"""The schema comes from Alembic migrations that agree with the models, on both databases."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import sessions_api.models  # noqa: F401
from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc
from sessions_api.models import Role, devices, members, schema_version, session_import, tenancy
from tests.support.live_server import COMMAND, server_env


@pytest.fixture
def empty_database_url(private_database_url) -> str:
    """The test's database, emptied of every table (migrations start from zero)."""
    database_url = private_database_url
    db.configure(Settings(database_url=database_url))
    with db.engine().begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            for table in reversed(inspect(conn).get_table_names()):
                conn.execute(text(f'DROP TABLE "{table}"'))
    db.engine().dispose()
    return database_url


def test_the_models_and_the_migrations_agree(database_url):
    db.configure(Settings(database_url=database_url))
    with db.engine().connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert differences == []
    assert schema_version.current_revision() == schema_version.head_revision()


@pytest.mark.live_server
def test_db_upgrade_builds_an_empty_database_from_zero(empty_database_url):
    env = server_env(empty_database_url)
    done = subprocess.run([COMMAND, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"from nothing to {schema_version.head_revision()}" in done.stdout
    again = subprocess.run([COMMAND, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "is current" in again.stdout
    db.configure(Settings(database_url=empty_database_url))
    with db.engine().connect() as conn:
        assert {"sessions", "api_keys", "memberships", "users", "organizations", "devices"} <= set(
            inspect(conn).get_table_names()
        )


def _run_on_altered_schema_version(database_url: str, statement: str, *command: str) -> subprocess.CompletedProcess:
    """Runs `sessions-api COMMAND` after `statement` has changed the recorded schema version."""
    db.configure(Settings(database_url=database_url))
    with db.engine().begin() as conn:
        conn.execute(text(statement))
    db.engine().dispose()
    return subprocess.run([COMMAND, *command], env=server_env(database_url), capture_output=True, text=True, timeout=60)


@pytest.mark.live_server
def test_serve_refuses_a_database_whose_schema_is_behind(private_database_url):
    done = _run_on_altered_schema_version(
        private_database_url, "UPDATE alembic_version SET version_num = 'an-older-one'", "serve", "--port", "1"
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"sessions-api: error: the database schema is at an-older-one, this version needs "
        f"{schema_version.head_revision()}: run 'sessions-api db upgrade' first"
    ]


@pytest.mark.live_server
def test_other_commands_refuse_it_too(private_database_url):
    done = _run_on_altered_schema_version(
        private_database_url, "DELETE FROM alembic_version", "org", "create", "--name", "x"
    )
    assert done.returncode == 1 and "run 'sessions-api db upgrade' first" in done.stderr


def test_migration_0007_finds_each_organizations_longest_session(private_database_url):
    """The backfill of `longest_session_seconds`: the longest an ended session lasted, rounded
    up (SQLite's julianday may add a second); a live session's expiry does not count."""
    db.configure(Settings(database_url=private_database_url))
    schema_version.ensure_current(migrate=True)
    user, _personal = tenancy.create_user("longest@example.com")
    team, quiet = tenancy.create_organization("Long"), tenancy.create_organization("Quiet")
    members.add_member(team.id, user.id, Role.admin)
    device = devices.add_device("ios", "phone", "iPhone", "18")
    spans = [(0, 7200.5, None), (10_000, 60, 86_400), (20_000, None, 10 * 86_400)]  # start, released, expires
    lines = []
    for offset, released, expires in spans:
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
        record = {"organization": str(team.id), "user": str(user.id), "device": str(device.id)}
        record["createdAt"] = format_utc(start)
        if released is not None:
            record["releasedAt"] = format_utc(start + timedelta(seconds=released))
        if expires is not None:
            record["expiresAt"] = format_utc(start + timedelta(seconds=expires))
        lines.append(json.dumps(record))
    session_import.import_sessions(lines)
    with db.engine().begin() as conn:
        conn.execute(text("UPDATE organizations SET longest_session_seconds = 0"))
        config = schema_version.alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
        command.upgrade(config, "head")
        longest = dict(conn.execute(text("SELECT id, longest_session_seconds FROM organizations")).all())
    as_stored = {str(uuid.UUID(str(key))): value for key, value in longest.items()}
    assert 7201 <= as_stored[str(team.id)] <= 7202
    assert as_stored[str(quiet.id)] == 0
