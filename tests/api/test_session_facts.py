"""What a session was: its facts (name, build, tags, metadata, result), given at the start and
changed with updateSession, audited and sent as `session.updated`, and its duration."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, session_import
from tests.support.api import API, SESSIONS, UNREACHABLE_HOOK, WEBHOOK_ENDPOINTS, assert_error, bodies_to_send, list_all

FACTS = {
    "name": "checkout flow",
    "build": "nightly-42",
    "tags": ["smoke", "ios18"],
    "metadata": {"commit": "4f2a9c1", "pipeline": "8812"},
}


@pytest.fixture
def team(world):
    return world.organization("Team")


@pytest.fixture
def fleet(world):
    return [world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2") for n in range(4)]


def _start(client, member, team, facts=None, **headers):
    body = {"platform": "ios", **({"facts": facts} if facts is not None else {})}
    response = client.post(SESSIONS, json=body, headers={**member.acting_on(team.id), **headers})
    assert response.status_code == 201, response.text
    return response.json()


def _patch(client, member, team, session_id, body):
    return client.patch(f"{SESSIONS}/{session_id}", json=body, headers=member.acting_on(team.id))


def test_a_session_starts_with_its_facts_and_shows_them_everywhere(client, writer, team, fleet):
    started = _start(client, writer, team, FACTS)
    assert {fact: started[fact] for fact in FACTS} == FACTS
    assert started["result"] is None and started["resultReason"] is None and started["durationSeconds"] is None
    got = client.get(f"{SESSIONS}/{started['id']}", headers=writer.acting_on(team.id)).json()
    listed = client.get(SESSIONS, headers=writer.acting_on(team.id)).json()["data"][0]
    assert got == listed == started


def test_names_and_builds_take_255_characters(client, writer, team, fleet):
    started = _start(client, writer, team, {"name": "n" * 255, "build": "b" * 255})
    assert (len(started["name"]), len(started["build"])) == (255, 255)


def test_a_session_without_facts_shows_empty_ones(client, writer, team, fleet):
    started = _start(client, writer, team)
    assert (started["name"], started["build"], started["tags"], started["metadata"]) == (None, None, [], {})


def test_a_released_session_shows_how_long_it_lasted(client, writer, team, fleet):
    started = _start(client, writer, team)
    released = client.post(f"{SESSIONS}/{started['id']}/release", headers=writer.acting_on(team.id)).json()
    lasted = datetime.fromisoformat(released["releasedAt"]) - datetime.fromisoformat(released["createdAt"])
    assert released["durationSeconds"] == pytest.approx(lasted.total_seconds(), abs=1e-6)
    assert released["durationSeconds"] >= 0


def test_update_sets_what_is_given_clears_nulls_and_keeps_the_rest(client, writer, team, fleet):
    started = _start(client, writer, team, FACTS)
    changed = _patch(client, writer, team, started["id"], {"result": "failed", "resultReason": "timeout", "name": None})
    assert changed.status_code == 200, changed.text
    session = changed.json()
    assert session["result"] == "failed" and session["resultReason"] == "timeout" and session["name"] is None
    assert session["build"] == FACTS["build"] and session["tags"] == FACTS["tags"]
    replaced = _patch(client, writer, team, started["id"], {"tags": ["regression"], "metadata": {}}).json()
    assert replaced["tags"] == ["regression"] and replaced["metadata"] == {}
    assert client.get(f"{SESSIONS}/{started['id']}", headers=writer.acting_on(team.id)).json() == replaced


def test_every_change_is_audited_and_sent_once_and_no_change_records_nothing(client, world, writer, team, fleet):
    admin = world.member(of=[(team, Role.admin)])
    hook = client.post(
        WEBHOOK_ENDPOINTS,
        json={"url": UNREACHABLE_HOOK, "events": ["session.updated"]},
        headers=admin.acting_on(team.id),
    )
    assert hook.status_code == 201, hook.text
    started = _start(client, writer, team, {"build": "b1"})
    assert (
        _patch(
            client, writer, team, started["id"], {"build": "b2", "tags": ["smoke"], "metadata": {"k": "v"}}
        ).status_code
        == 200
    )
    assert _patch(client, writer, team, started["id"], {"build": "b2"}).status_code == 200  # nothing changes
    events = list_all(client, admin.acting_on(team.id), path=f"{API}/audit-events", type="session.updated")
    assert len(events) == 1
    assert events[0]["target"] == {"kind": "session", "id": started["id"]}
    before, after = (
        {"build": "b1", "tags": [], "metadata": {}},
        {"build": "b2", "tags": ["smoke"], "metadata": {"k": "v"}},
    )
    assert events[0]["data"] == {"before": before, "after": after}
    payloads = bodies_to_send("session.updated")
    assert len(payloads) == 1
    assert payloads[0]["type"] == "session.updated" and payloads[0]["data"]["build"] == "b2"


def test_a_result_may_change_up_to_a_day_after_the_end_and_not_later(client, world, writer, team, fleet):
    ended = {"organization": str(team.id), "user": str(writer.user.id), "device": str(fleet[0].id)}
    now = utcnow()
    recent = {
        **ended,
        "createdAt": format_utc(now - timedelta(hours=23, minutes=30)),
        "releasedAt": format_utc(now - timedelta(hours=23)),
    }
    old = {
        **ended,
        "createdAt": format_utc(now - timedelta(hours=26)),
        "releasedAt": format_utc(now - timedelta(hours=25)),
    }
    session_import.import_sessions([json.dumps(old), json.dumps(recent)])
    recent_session, old_session = list_all(client, writer.acting_on(team.id))
    assert _patch(client, writer, team, recent_session["id"], {"result": "passed"}).json()["result"] == "passed"
    refused = _patch(client, writer, team, old_session["id"], {"result": "passed"})
    assert_error(refused, 409, "result_window_closed")
    assert_error(_patch(client, writer, team, old_session["id"], {"resultReason": "late"}), 409, "result_window_closed")
    assert (
        _patch(client, writer, team, old_session["id"], {"name": "still nameable"}).json()["name"] == "still nameable"
    )


def test_only_writers_of_the_sessions_organization_change_it(client, world, writer, team, fleet):
    started = _start(client, writer, team)
    reader = world.member(of=[(team, Role.readonly)])
    assert_error(_patch(client, reader, team, started["id"], {"name": "x"}), 403, "forbidden")
    other = world.organization("Other")
    outsider = world.member(of=[(other, Role.admin)])
    assert_error(_patch(client, outsider, other, started["id"], {"name": "x"}), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"tags": ["has space"]},
        {"tags": ["a" * 65]},
        {"tags": [f"t{n}" for n in range(21)]},
        {"tags": ["same", "same"]},
        {"metadata": {"n": 1}},
        {"metadata": {f"k{n}": "v" * 40 for n in range(100)}},  # more than 4 KiB as JSON
        {"name": "a\u202egnp.exe"},
        {"name": "x" * 256},
        {"name": "   "},
        {"result": "skipped"},
        {"resultReason": "x" * 1001},
        {"device": "not a fact"},
    ],
)
def test_facts_outside_the_rules_are_refused_with_400(client, writer, team, fleet, body):
    started = _start(client, writer, team)
    assert_error(_patch(client, writer, team, started["id"], body), 400, "invalid_request")
    unchanged = client.get(f"{SESSIONS}/{started['id']}", headers=writer.acting_on(team.id)).json()
    assert unchanged == started


def test_an_idempotency_key_is_bound_to_the_facts_too(client, writer, team, fleet):
    first = _start(client, writer, team, {"build": "b1"}, **{"Idempotency-Key": "k-1"})
    again = client.post(
        SESSIONS,
        json={"platform": "ios", "facts": {"build": "b1"}},
        headers={**writer.acting_on(team.id), "Idempotency-Key": "k-1"},
    )
    assert again.status_code == 201 and again.json() == first
    other = client.post(
        SESSIONS,
        json={"platform": "ios", "facts": {"build": "b2"}},
        headers={**writer.acting_on(team.id), "Idempotency-Key": "k-1"},
    )
    assert_error(other, 422, "idempotency_key_reused")


def test_a_ci_job_lists_its_builds_failures(client, writer, team, fleet):
    """The issue's story: tag sessions with the build, mark each, list the build's failures."""
    outcomes = ["passed", "failed", "passed", "failed", "error", "failed"]
    ids = []
    for index, outcome in enumerate(outcomes):
        started = _start(client, writer, team, {"build": "ci-7" if index % 3 else "ci-6", "tags": ["ci"]})
        client.post(f"{SESSIONS}/{started['id']}/release", headers=writer.acting_on(team.id))
        assert _patch(client, writer, team, started["id"], {"result": outcome}).status_code == 200
        ids.append((started["id"], "ci-7" if index % 3 else "ci-6", outcome))
    failures = list_all(client, writer.acting_on(team.id), build="ci-7", result="failed", tag=["ci"])
    expected = [sid for sid, build, outcome in reversed(ids) if build == "ci-7" and outcome == "failed"]
    assert [item["id"] for item in failures] == expected and expected
