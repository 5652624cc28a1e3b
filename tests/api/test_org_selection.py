"""Which organization a request acts on, who may act on it, and isolation between them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sessions_api.models import Role, members
from tests.support.api import SESSIONS, assert_error, list_all

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def team(world):
    return world.organization("Team")


def _org_of_page(client, headers) -> set[str]:
    response = client.get(SESSIONS, headers=headers)
    assert response.status_code == 200, response.text
    return {session["organization"] for session in response.json()["data"]}


def test_without_header_an_unbound_key_acts_on_the_default_organization(client, world, team):
    member = world.member(of=[(team, Role.admin)])
    world.sessions(member.personal, member.user, [T0])
    world.sessions(team, member.user, [T0])
    assert _org_of_page(client, member.headers) == {str(member.personal.id)}


def test_without_header_a_bound_key_acts_on_its_organization(client, world, team):
    member = world.member(of=[(team, Role.readonly)], bound_to=team)
    world.sessions(member.personal, member.user, [T0])
    world.sessions(team, member.user, [T0])
    assert _org_of_page(client, member.headers) == {str(team.id)}


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_list_and_get_with_the_header(client, world, team, role):
    owner = world.member(of=[(team, Role.admin)])
    world.sessions(team, owner.user, [T0])
    member = world.member(of=[(team, role)])
    response = client.get(SESSIONS, headers=member.acting_on(team.id))
    assert response.status_code == 200
    (session,) = response.json()["data"]
    assert session["organization"] == str(team.id)
    got = client.get(f"{SESSIONS}/{session['id']}", headers=member.acting_on(team.id))
    assert got.status_code == 200 and got.json() == session


def test_a_bound_key_may_name_its_own_organization(client, world, team):
    member = world.member(of=[(team, Role.readwrite)], bound_to=team)
    assert client.get(SESSIONS, headers=member.acting_on(team.id)).status_code == 200


def test_forbidden_cases_share_one_answer(client, world, team):
    outsider = world.member()
    bound = world.member(of=[(team, Role.admin)], bound_to=team)
    other_team = world.organization("Other")
    members.add_member(other_team.id, bound.user.id, Role.admin)
    cases = [
        outsider.acting_on(team.id),  # exists, not a member
        outsider.acting_on(uuid.uuid4()),  # does not exist
        outsider.acting_on("not-an-id"),  # cannot exist
        bound.acting_on(other_team.id),  # member, but the key is bound elsewhere
        bound.acting_on(bound.personal.id),  # the user's own default, still not the bound org
    ]
    bodies = set()
    for headers in cases:
        response = client.get(SESSIONS, headers=headers)
        bodies.add(assert_error(response, 403, "forbidden")["error"]["message"])
        assert_error(client.get(f"{SESSIONS}/{uuid.uuid4()}", headers=headers), 403, "forbidden")
    assert len(bodies) == 1


def test_no_response_contains_another_organizations_sessions(client, world, team):
    alice = world.member(of=[(team, Role.admin)])
    bob = world.member()
    world.sessions(team, alice.user, [T0.replace(minute=minute) for minute in range(30)])
    world.sessions(bob.personal, bob.user, [T0.replace(minute=minute) for minute in range(30)])
    for member, organization in ((alice, team), (bob, bob.personal)):
        seen = list_all(client, member.acting_on(organization.id), limit=7)
        assert len(seen) == 30
        assert {session["organization"] for session in seen} == {str(organization.id)}


def test_another_organizations_session_is_indistinguishable_from_a_missing_one(client, world, team):
    alice = world.member(of=[(team, Role.admin)])
    bob = world.member()
    world.sessions(team, alice.user, [T0])
    (foreign,) = client.get(SESSIONS, headers=alice.acting_on(team.id)).json()["data"]
    foreign_answer = client.get(f"{SESSIONS}/{foreign['id']}", headers=bob.headers)
    missing_answer = client.get(f"{SESSIONS}/{uuid.uuid4()}", headers=bob.headers)
    assert_error(foreign_answer, 404, "not_found")
    assert foreign_answer.content == missing_answer.content
    # And from Alice's own Personal organization, the team's session is not found either.
    assert_error(client.get(f"{SESSIONS}/{foreign['id']}", headers=alice.headers), 404, "not_found")
