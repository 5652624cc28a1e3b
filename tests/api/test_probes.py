"""Liveness and readiness, for orchestrators: outside /api/v1, no key, the envelope when not ready."""

from __future__ import annotations

from sqlalchemy import text
from starlette.testclient import TestClient

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.web.app import create_app
from tests.support.api import assert_error


def test_healthz_answers_without_a_key_or_the_database(client, monkeypatch):
    def no_database():
        raise AssertionError("healthz must not touch the database")

    monkeypatch.setattr(db, "engine", no_database)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["X-Request-Id"] and response.headers["Cache-Control"] == "no-store"


def test_readyz_answers_200_on_a_current_schema(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready", "unreadableSecrets": 0}


def test_readyz_answers_503_with_a_reason_code_while_the_schema_is_behind(private_database_url, caplog):
    # A database of its own: the schema version is not among what tests empty between them.
    app = create_app(Settings(database_url=private_database_url))
    with TestClient(app) as client:
        with app.state.database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'an-older-one'"))
        response = client.get("/readyz")
    body = assert_error(response, 503, "unavailable")
    assert body["error"]["message"] == "Not ready: schema_behind."
    assert int(response.headers["Retry-After"]) > 0
    # The details are the operator's, in the log.
    assert any("an-older-one" in record.getMessage() for record in caplog.records)


def test_readyz_answers_503_when_the_database_does_not_answer(settings, tmp_path):
    missing = f"sqlite:///{tmp_path}/no/such/directory/sessions.db"
    url = missing if settings.is_sqlite else "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with TestClient(create_app(settings.replace(database_url=url, db_connect_timeout=1))) as client:
        body = assert_error(client.get("/readyz"), 503, "unavailable")
        # A reason code, and nothing of the database's host, port or driver for an unauthenticated caller.
        assert body["error"]["message"] == "Not ready: database_unreachable."
        assert client.get("/healthz").status_code == 200  # alive all the same


def test_probes_take_only_get_and_head(client):
    for path in ("/healthz", "/readyz", "/metrics"):
        response = client.post(path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["Allow"] == "GET, HEAD"
    assert client.head("/healthz").status_code == 200
