"""Fixtures of the API tests that act in one team as its admin (modules may define their own)."""

from __future__ import annotations

import pytest

from sessions_api.models import Role


@pytest.fixture
def team(world):
    return world.organization("Team")


@pytest.fixture
def admin(world, team):
    return world.member(of=[(team, Role.admin)])


@pytest.fixture
def writer(world, team):
    return world.member(of=[(team, Role.readwrite)])


@pytest.fixture
def session_id(client, world, writer, team):
    """A live session of the team, started by its writer."""
    world.device()
    started = client.post("/api/v1/sessions", json={"platform": "android"}, headers=writer.acting_on(team.id))
    assert started.status_code == 201, started.text
    return started.json()["id"]
