"""Webhook signing secrets are sealed at rest with SESSIONS_API_SECRET_KEYS (Fernet): the
database holds no `whsec_` value, deliveries still verify, and keys rotate (a new key first,
`sessions-api secrets rotate`, the old key dropped) without a delivery failing."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from starlette.testclient import TestClient

from sessions_api.cli.commands import main
from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import WebhookEndpoint
from sessions_api.web.app import create_app
from tests.support.api import WEBHOOK_ENDPOINTS, webhook_path
from tests.support.receiver import receiving

OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(webhook_allow_private=True, secret_keys=OLD_KEY)


def _stored_secrets() -> list[str]:
    with db.reading() as conn:
        rows = conn.execute(select(WebhookEndpoint.secret, WebhookEndpoint.previous_secret)).all()
    return [value for row in rows for value in row if value is not None]


def _test_delivery(client, headers, endpoint_id, receiver):
    attempt = client.post(webhook_path(endpoint_id, "test"), headers=headers).json()
    assert attempt["succeeded"], attempt
    return receiver.at("/hook")[-1]


def test_signing_secrets_are_sealed_and_rotate_with_the_keys(client, settings, team, admin, monkeypatch):
    headers = admin.acting_on(team.id)
    with receiving() as receiver:
        body = {"url": receiver.url("/hook"), "events": ["session.started"]}
        endpoint = client.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
        rotated = client.post(webhook_path(endpoint["id"], "rotate-secret"), headers=headers).json()
        stored = _stored_secrets()
        assert len(stored) == 2 and all(value.startswith("fernet:") and "whsec_" not in value for value in stored)
        delivered = _test_delivery(client, headers, endpoint["id"], receiver)
        assert delivered.verifies_with(rotated["secret"]) and delivered.verifies_with(endpoint["secret"])

        # A new key first, every secret resealed under it, the old key dropped: nothing fails.
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("SESSIONS_API_SECRET_KEYS", f"{NEW_KEY},{OLD_KEY}")
        assert main(["secrets", "rotate"]) == 0
        with TestClient(create_app(settings.replace(secret_keys=NEW_KEY))) as renewed:
            delivered = _test_delivery(renewed, headers, endpoint["id"], receiver)
        assert delivered.verifies_with(rotated["secret"])
    assert all(value.startswith("fernet:") for value in _stored_secrets())
    assert set(_stored_secrets()).isdisjoint(stored)


def test_without_keys_secrets_are_stored_as_they_are_and_sealed_by_the_first_rotation(
    client, settings, team, admin, monkeypatch
):
    headers = admin.acting_on(team.id)
    plain = settings.replace(secret_keys="")
    with TestClient(create_app(plain)) as unsealed:
        body = {"url": "https://hooks.example.invalid/hook", "events": ["session.started"]}
        endpoint = unsealed.post(WEBHOOK_ENDPOINTS, json=body, headers=headers).json()
    assert _stored_secrets() == [endpoint["secret"]]
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SESSIONS_API_SECRET_KEYS", OLD_KEY)
    assert main(["secrets", "rotate", "--json"]) == 0
    (sealed,) = _stored_secrets()
    assert sealed.startswith("fernet:") and endpoint["secret"] not in sealed
