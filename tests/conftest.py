"""Fixtures: a fresh database per test, the real app in-process, and data made through the
product's own data layer (the same functions the CLI calls)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from models import Role, devices, keys, session_import, tenancy
from models.tables import Device, Organization, User
from sessions_api.app import create_app
from sessions_api.settings import Settings
from sessions_api.timestamps import format_utc
from tests.databases import PostgresDatabases, migrate, truncate_all


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


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "sessions.db"
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


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Responses are validated against the spec in every test: a drifting response fails loudly.
    return Settings(database_url=database_url, validate_responses=True)


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class Member:
    user: User
    personal: Organization
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def acting_on(self, organization_id) -> dict[str, str]:
        return {**self.headers, "X-Organization-Id": str(organization_id)}


class World:
    """Builds users, organizations, keys, devices and sessions through the data layer."""

    def __init__(self) -> None:
        self._device: Device | None = None

    def member(self, email: str | None = None, *, of: Sequence[tuple[Organization, Role]] = (), bound_to=None) -> Member:
        user, personal = tenancy.create_user(email or f"user-{uuid.uuid4().hex[:8]}@example.com")
        for organization, role in of:
            tenancy.add_member(organization.id, user.id, role)
        _, secret = keys.create_key(user.id, bound_to.id if bound_to is not None else None)
        return Member(user, personal, secret)

    def organization(self, name: str = "Team") -> Organization:
        return tenancy.create_organization(name)

    def device(self, **spec) -> Device:
        """A device for released sessions (shared), or a new one when `spec` describes it."""
        if spec:
            defaults = {"platform": "android", "type": "emulator", "name": "Pixel 9", "os_version": "15"}
            return devices.add_device(**{**defaults, **spec})
        if self._device is None:
            self._device = devices.add_device("android", "emulator", "Pixel 9", "15")
        return self._device

    def sessions(
        self,
        organization: Organization,
        user: User,
        created: Sequence[datetime | None],
        released: Sequence[datetime | None] | None = None,
    ) -> int:
        """Import one session per entry of `created` (None: now) through the import path.

        Without `released`, a session with a `created` instant is released a minute later and
        one created now stays live; each live session gets a device of its own.
        """
        lines = []
        for index, created_at in enumerate(created):
            if released is not None:
                released_at = released[index]
            else:
                released_at = created_at + timedelta(minutes=1) if created_at is not None else None
            device = self.device(name=f"Live {uuid.uuid4().hex[:6]}") if released_at is None else self.device()
            record = {"organization": str(organization.id), "user": str(user.id), "device": str(device.id)}
            if created_at is not None:
                record["createdAt"] = format_utc(created_at)
            if released_at is not None:
                record["releasedAt"] = format_utc(released_at)
            lines.append(json.dumps(record))
        return session_import.import_sessions(lines)


@pytest.fixture
def world(app) -> World:
    return World()


def list_all(client: TestClient, headers: dict, limit: int = 100, **params) -> list[dict]:
    """Follow nextCursor from the first page to the last; returns every session seen."""
    seen: list[dict] = []
    query = {"limit": limit, **params}
    for _ in range(100_000):
        response = client.get("/api/v1/sessions", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["data"])
        if "nextCursor" not in body:
            return seen
        assert body["data"], "a page with a nextCursor must not be empty"
        query["before"] = body["nextCursor"]
    raise AssertionError("pagination did not end")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body


@pytest.fixture(scope="session")
def node_tools():
    """node_modules from the committed lock file (`npm ci` when missing or stale)."""
    from tests.node_tools import ensure_node_modules

    return ensure_node_modules()
