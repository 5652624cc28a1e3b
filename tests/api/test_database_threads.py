"""How many threads run the database calls of one server process."""

from __future__ import annotations

import anyio.to_thread
import pytest
from starlette.testclient import TestClient

from sessions_api.core.settings import Settings
from sessions_api.web.app import create_app


def _running_thread_limit(settings: Settings) -> int:
    async def limit() -> int:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    with TestClient(create_app(settings)) as client:
        return client.portal.call(limit)


def test_one_thread_on_sqlite_and_one_per_pooled_connection_elsewhere(settings):
    expected = 1 if settings.database_url.startswith("sqlite") else 7
    assert _running_thread_limit(settings.replace(db_pool_size=7)) == expected


def test_the_environment_sets_the_threads(settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SESSIONS_API_DB_THREADS", "3")
    assert _running_thread_limit(Settings.from_env()) == 3
    monkeypatch.setenv("SESSIONS_API_DB_THREADS", "")
    assert Settings.from_env().database_threads() == (1 if settings.database_url.startswith("sqlite") else 10)


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_thread_count_below_one_is_refused(monkeypatch, value):
    monkeypatch.setenv("SESSIONS_API_DB_THREADS", value)
    with pytest.raises(ValueError, match="SESSIONS_API_DB_THREADS"):
        Settings.from_env()
