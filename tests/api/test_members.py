"""Organizations and their members, managed through the API: the last-admin and Personal rules.
(Members join through invitations: tests/api/test_invitations.py.)"""

from __future__ import annotations

import pytest

from sessions_api.models import Role, api_keys, tenancy
from sessions_api.models.errors import InvalidInput
from tests.support.api import API_KEYS, ORGANIZATIONS, assert_error, list_all, members_path, organization_path


def _roles(client, member, organization_id) -> dict[str, str]:
    listed = list_all(client, member.headers, path=members_path(organization_id))
    return {item["user"]["id"]: item["role"] for item in listed}


def test_a_new_organization_has_its_creator_as_admin(client, world):
    alice = world.member()
    created = client.post(ORGANIZATIONS, json={"name": "  Acme QA  "}, headers=alice.headers)
    assert created.status_code == 201
    organization = created.json()
    assert organization == {
        "id": organization["id"],
        "name": "Acme QA",
        "personal": False,
        "role": "admin",
        # The self-service plan, shown to its admin.
        "plan": {
            "maxLiveSessions": 2,
            "maxQueuedSessions": 10,
            "maxStorageBytes": 5 * 1024**3,
            "storedBytes": 0,
            "artifactRetentionDays": 30,
        },
    }
    assert created.headers["Location"] == organization_path(organization["id"])
    assert client.get(organization_path(organization["id"]), headers=alice.headers).json() == organization
    assert organization in client.get(ORGANIZATIONS, headers=alice.headers).json()["data"]
    assert _roles(client, alice, organization["id"]) == {str(alice.user.id): "admin"}
    blank = client.post(ORGANIZATIONS, json={"name": "   "}, headers=alice.headers)
    assert_error(blank, 400, "invalid_request")


def test_admins_rename_an_organization_but_not_a_personal_one(client, world, team, admin):
    renamed = client.patch(organization_path(team.id), json={"name": "Team Two"}, headers=admin.headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Team Two"
    reader = world.member(of=[(team, Role.readonly)])
    assert client.get(organization_path(team.id), headers=reader.headers).json()["name"] == "Team Two"
    personal = client.patch(organization_path(admin.personal.id), json={"name": "Mine"}, headers=admin.headers)
    assert_error(personal, 422, "personal_organization")
    assert client.get(organization_path(admin.personal.id), headers=admin.headers).json()["name"].endswith("(Personal)")


def test_the_last_admin_can_be_neither_demoted_nor_removed(client, world, team, admin):
    path = members_path(team.id, admin.user.id)
    assert_error(client.patch(path, json={"role": "readwrite"}, headers=admin.headers), 409, "last_admin")
    assert_error(client.delete(path, headers=admin.headers), 409, "last_admin")
    # Nor in a Personal organization, whose only admin is its user.
    personal = members_path(admin.personal.id, admin.user.id)
    assert_error(client.delete(personal, headers=admin.headers), 409, "last_admin")

    bob = world.member(of=[(team, Role.readwrite)])
    promoted = client.patch(members_path(team.id, bob.user.id), json={"role": "admin"}, headers=admin.headers)
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    # Two admins: either may step down, but then the other is the last.
    assert client.patch(path, json={"role": "readonly"}, headers=admin.headers).status_code == 200
    assert_error(
        client.patch(members_path(team.id, bob.user.id), json={"role": "readonly"}, headers=bob.headers),
        409,
        "last_admin",
    )
    assert client.delete(path, headers=admin.headers).status_code == 204  # leaving by themselves
    assert _roles(client, bob, team.id) == {str(bob.user.id): "admin"}


def test_a_role_change_to_the_same_role_changes_nothing(client, world, team, admin):
    bob = world.member(of=[(team, Role.readwrite)])
    same = client.patch(members_path(team.id, bob.user.id), json={"role": "readwrite"}, headers=admin.headers)
    assert same.status_code == 200 and same.json()["role"] == "readwrite"


def test_users_who_are_not_members_answer_404(client, world, team, admin):
    stranger = world.member()
    for answer in (
        client.patch(members_path(team.id, stranger.user.id), json={"role": "admin"}, headers=admin.headers),
        client.delete(members_path(team.id, stranger.user.id), headers=admin.headers),
    ):
        body = assert_error(answer, 404, "not_found")
        assert "member" in body["error"]["message"]


def test_members_page_newest_first_and_exactly(client, world, team, admin):
    joined = [world.member(of=[(team, Role.readonly)]) for _ in range(6)]
    expected = [str(member.user.id) for member in reversed(joined)] + [str(admin.user.id)]
    for limit in (1, 4, 7):
        seen = list_all(client, admin.headers, limit=limit, path=members_path(team.id))
        assert [item["user"]["id"] for item in seen] == expected
    body = client.get(members_path(team.id), params={"limit": 3}, headers=admin.headers).json()
    assert len(body["data"]) == 3 and body["nextCursor"] == body["data"][-1]["createdAt"]


@pytest.mark.parametrize(
    "name",
    [
        "Team\x00",
        "Tab\tbed",
        "Bell\x07",
        "\x85",
        "   ",
        # Bidirectional controls: shown to members as `Acme exe.png`.
        "Acme \u202egnp.exe",
        "\u2066Acme\u2069",
        "Acme\u202a",
    ],
)
def test_names_with_control_characters_or_only_spaces_are_refused(client, world, name):
    alice = world.member()
    for path in (ORGANIZATIONS, API_KEYS):
        assert_error(client.post(path, json={"name": name}, headers=alice.headers), 400, "invalid_request")
    # The data layer says so too, for the command line, and renaming is no way around it.
    team = world.organization("Team")
    admin = world.member(of=[(team, Role.admin)])
    assert_error(
        client.patch(organization_path(team.id), json={"name": name}, headers=admin.headers), 400, "invalid_request"
    )
    with pytest.raises(InvalidInput):
        tenancy.create_organization(name)
    with pytest.raises(InvalidInput):
        api_keys.create_key(alice.user.id, name=name)
