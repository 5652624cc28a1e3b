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
