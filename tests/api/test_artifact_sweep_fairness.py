"""No organization's backlog holds back another's: a sweep ends at most a share of each
organization's due artifacts, so an organization with thousands due does not fill the batch
that another's one due artifact waits behind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sessions_api.core.timestamps import utcnow
from sessions_api.models import Role
from sessions_api.models.artifacts import retention
from tests.support.artifacts import API, Payload, attach

LOG = Payload(b"I/ActivityManager: Start proc\n" * 20)


@pytest.fixture
def settings(settings):
    # The background sweep stays out of the way: the test runs the sweep itself.
    return settings.replace(expiry_sweep_seconds=3600)


@pytest.mark.parametrize("sweep", ["expire_artifacts", "fail_abandoned_uploads"])
def test_a_backlog_of_one_organization_does_not_hold_back_another(
    client, world, writer, team, session_id, monkeypatch, sweep
):
    monkeypatch.setattr(retention, "BATCH", 6)
    monkeypatch.setattr(retention, "PER_ORGANIZATION", 2)
    other = world.organization("Other")
    member = world.member(of=[(other, Role.readwrite)])
    world.device(name="Pixel of Other")
    started = client.post(f"{API}/sessions", json={"platform": "android"}, headers=member.acting_on(other.id))
    assert started.status_code == 201, started.text
    targets = [(writer.acting_on(team.id), session_id)] * 8 + [(member.acting_on(other.id), started.json()["id"])]
    made = []
    for headers, session in targets:  # the backlog first: all older than the other's one
        if sweep == "expire_artifacts":
            made.append((headers, session, attach(client, headers, session, LOG)["id"]))
        else:
            declared = client.post(f"{API}/sessions/{session}/artifacts", json=LOG.declared(), headers=headers)
            made.append((headers, session, declared.json()["id"]))

    assert getattr(retention, sweep)(now=utcnow() + timedelta(days=100_000)) == 2 + 1

    def status(headers, session, artifact_id):
        return client.get(f"{API}/sessions/{session}/artifacts/{artifact_id}", headers=headers).json()["status"]

    ended = "expired" if sweep == "expire_artifacts" else "failed"
    assert status(*made[-1]) == ended  # the other organization's, in the first sweep
    assert [status(*artifact) for artifact in made[:-1]].count(ended) == 2  # the backlog's share
