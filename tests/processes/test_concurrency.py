"""Several processes write one organization's sessions while a client pages through it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from sessions_api.core import db
from sessions_api.core.timestamps import format_utc
from sessions_api.models.tables import SessionRecord
from tests.support.api import list_all
from tests.support.live_server import server_env
from tests.support.node_tools import ROOT

T0 = datetime(2026, 6, 1, tzinfo=UTC)
IMPORTERS, LINES_EACH = 3, 1500
CREATORS, CREATES_EACH = 2, 60
pytestmark = pytest.mark.live_server

# A writer process: imports a file through the import path, or creates sessions one by one
# ("now"); all writers wait for one start time, so that they really run at once.
_WRITER = """
import sys, time, uuid
from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models.session_import import import_sessions
from sessions_api.models.sessions import NewSession
from tests.support.world import create_session
url, start_at, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
db.configure(Settings(database_url=url))
while time.time() < start_at:
    time.sleep(0.002)
if mode == "import":
    with open(sys.argv[4]) as lines:
        import_sessions(lines)
else:  # each live session on a device of its own
    organization, user = uuid.UUID(sys.argv[4]), uuid.UUID(sys.argv[5])
    for device in sys.argv[6:]:
        create_session(NewSession(organization, user, uuid.UUID(device)))
"""


def test_concurrent_writers_keep_instants_unique_and_paging_exact(client, world, database_url, tmp_path):
    alice = world.member()
    device = world.device()
    world.sessions(alice.personal, alice.user, [T0] * 300)
    existing = {session["id"] for session in list_all(client, alice.headers, limit=500)}
    assert len(existing) == 300

    # Every importer asks for the same instant as every other: the worst case for collisions.
    line = json.dumps(
        {
            "organization": str(alice.personal.id),
            "user": str(alice.user.id),
            "device": str(device.id),
            "createdAt": format_utc(T0),
            "releasedAt": format_utc(T0 + timedelta(minutes=1)),
        }
    )
    batch = tmp_path / "same-instant.jsonl"
    batch.write_text("\n".join([line] * LINES_EACH))
    env = server_env(database_url)
    start_at = str(time.time() + 4)
    owner = [str(alice.personal.id), str(alice.user.id)]
    arguments = [["import", str(batch)]] * IMPORTERS + [
        ["create", *owner, *(str(world.device(name=f"Live {n}-{i}").id) for i in range(CREATES_EACH))]
        for n in range(CREATORS)
    ]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, database_url, start_at, *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in arguments
    ]

    traversals = 0
    deadline = time.monotonic() + 240
    while any(writer.poll() is None for writer in writers) and time.monotonic() < deadline:
        seen = [session["id"] for session in list_all(client, alice.headers, limit=97)]
        assert len(seen) == len(set(seen)), "a session was repeated while writers were busy"
        assert existing <= set(seen), "a session that existed before the traversal was skipped"
        traversals += 1
    for writer in writers:
        _, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
    assert traversals >= 1

    expected = 300 + IMPORTERS * LINES_EACH + CREATORS * CREATES_EACH
    with db.reading() as conn:
        rows, instants = conn.execute(
            select(func.count(), func.count(func.distinct(SessionRecord.created_at))).where(
                SessionRecord.organization_id == alice.personal.id
            )
        ).one()
        ids = set(conn.execute(select(SessionRecord.id)).scalars())
    assert rows == instants == expected
    final = [session["id"] for session in list_all(client, alice.headers, limit=500)]
    assert len(final) == len(set(final)) == expected
    assert set(final) == {str(session_id) for session_id in ids}
