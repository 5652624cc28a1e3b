"""How many threads run the database reads and writes of one server process."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from sessions_api.core import db, db_threads
from sessions_api.core.settings import Settings
from sessions_api.web.app import create_app


def _running_pool_sizes(settings: Settings) -> tuple[int, int]:
    app = create_app(settings)

    async def sizes() -> tuple[int, int]:
        with db.bound(app.state.database):  # as each request of the app is
            return int(db_threads._limiter("reads").total_tokens), int(db_threads._limiter("writes").total_tokens)

    with TestClient(app) as client:
        return client.portal.call(sizes)


def test_one_thread_each_on_sqlite_and_the_pool_elsewhere(settings):
    expected = (1, 1) if settings.is_sqlite else (7, 3)
    assert _running_pool_sizes(settings.replace(db_pool_size=7, db_max_overflow=3)) == expected


def test_the_environment_sets_the_threads(settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SESSIONS_API_DB_THREADS", "3")
    monkeypatch.setenv("SESSIONS_API_DB_WRITE_THREADS", "2")
    assert _running_pool_sizes(Settings.from_env()) == (3, 2)
    monkeypatch.setenv("SESSIONS_API_DB_THREADS", "")
    monkeypatch.setenv("SESSIONS_API_DB_WRITE_THREADS", "")
    assert Settings.from_env().read_threads() == (1 if settings.is_sqlite else 10)


@pytest.mark.parametrize("variable", ["SESSIONS_API_DB_THREADS", "SESSIONS_API_DB_WRITE_THREADS"])
@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_thread_count_below_one_is_refused(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        Settings.from_env()
