"""Many concurrent createSession calls against several server processes: each device is
leased once, and every other caller gets a clean 409."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.models import api_keys, devices, tenancy
from sessions_api.models.tables import SessionRecord
from tests.support.live_server import running_server, server_env

pytestmark = pytest.mark.live_server

DEVICES, REQUESTS = 20, 200


def test_200_concurrent_starts_for_20_devices_lease_each_device_once(private_database_url, tmp_path):
    # Budgets ample enough for 200 starts at once: this is about the race, not about the limits.
    env = server_env(
        private_database_url, SESSIONS_API_MAX_LIVE_SESSIONS="1000", SESSIONS_API_START_RATE_LIMIT="1000/second"
    )
    db.configure(Settings(database_url=private_database_url))
    user, _ = tenancy.create_user("racer@example.com")
    for n in range(DEVICES):
        devices.add_device("android", "emulator", f"Pixel {n}", "15")
    _, secret = api_keys.create_key(user.id)

    def start(_n: int) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{base}/sessions",
            data=json.dumps({"platform": "android"}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())["device"]["id"]
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())["error"]["code"]

    with running_server(env, "--workers", "2", log_path=tmp_path / "server.log") as (base, _process):
        with ThreadPoolExecutor(max_workers=40) as pool:
            outcomes = list(pool.map(start, range(REQUESTS)))

    statuses = Counter(status for status, _ in outcomes)
    assert statuses == {201: DEVICES, 409: REQUESTS - DEVICES}, outcomes
    leased = [detail for status, detail in outcomes if status == 201]
    assert len(set(leased)) == DEVICES  # every device once
    assert {detail for status, detail in outcomes if status == 409} == {"no_device_available"}
    with db.reading() as conn:
        live_per_device = (
            conn.execute(
                select(func.count()).where(SessionRecord.released_at.is_(None)).group_by(SessionRecord.device_id)
            )
            .scalars()
            .all()
        )
    assert sorted(live_per_device) == [1] * DEVICES
    assert "Traceback" not in (tmp_path / "server.log").read_text()
