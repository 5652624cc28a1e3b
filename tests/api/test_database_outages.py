"""When the database is unreachable or the pool is exhausted: 503, then recovery by itself."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url
from starlette.testclient import TestClient

from sessions_api.web.app import create_app
from tests.support.api import ME, SESSIONS, assert_error
from tests.support.tcp_proxy import TcpProxy


def _assert_unavailable(response) -> None:
    assert_error(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0


def test_an_exhausted_pool_answers_503_and_recovers(settings, world):
    alice = world.member()
    app = create_app(settings.replace(db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2))
    with TestClient(app, raise_server_exceptions=False) as client:
        # GET /me reads through the engine's pool (the hot reads have connections of their own).
        assert client.get(ME, headers=alice.headers).status_code == 200
        held = app.state.database.engine.connect()  # the only connection of the pool
        try:
            _assert_unavailable(client.get(ME, headers=alice.headers))
        finally:
            held.close()
        assert client.get(ME, headers=alice.headers).status_code == 200


def test_a_database_that_goes_away_answers_503_and_is_used_again_when_back(settings, world):
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("an embedded SQLite database cannot become unreachable")
    alice = world.member()
    world.sessions(alice.personal, alice.user, [None])
    url = make_url(settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(settings.replace(database_url=proxied, db_connect_timeout=2))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get(SESSIONS, headers=alice.headers).status_code == 200
            proxy.stop()
            for _ in range(3):  # pooled connections are dead, new ones are refused
                _assert_unavailable(client.get(SESSIONS, headers=alice.headers))
            proxy.start()
            response = client.get(SESSIONS, headers=alice.headers)
            assert response.status_code == 200 and len(response.json()["data"]) == 1
    finally:
        proxy.stop()
