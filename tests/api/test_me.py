"""GET /me: the caller, as the API key in use identifies them."""

from __future__ import annotations

from sessions_api.models import Role, api_keys, tenancy
from tests.support.api import ME, assert_error


def test_me_names_the_user_and_the_key_in_use(client, world):
    team = world.organization("Team")
    user, personal = tenancy.create_user("carol@example.com", "Carol")
    world_member = world.member(of=[(team, Role.readonly)])
    key, secret = api_keys.create_key(user.id, name="laptop")
    me = client.get(ME, headers={"Authorization": f"Bearer {secret}"}).json()
    assert me == {
        "id": str(user.id),
        "email": "carol@example.com",
        "name": "Carol",
        "defaultOrganization": str(personal.id),
        "key": {"id": str(key.id), "name": "laptop", "organization": None},
    }
    bound = world.member(of=[(team, Role.readonly)], bound_to=team)
    assert client.get(ME, headers=bound.headers).json()["key"] == {
        "id": str(bound.key_id),
        "name": None,
        "organization": str(team.id),
    }
    # Naming an organization the caller may not act on is refused, as for every operation.
    assert_error(client.get(ME, headers=world_member.acting_on(personal.id)), 403, "forbidden")
