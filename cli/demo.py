"""Demo data for `sessions-api serve --demo`, made through the product's own code paths."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import timedelta

from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import Role, api_keys, devices, members, session_import, tenancy

DEMO_EMAIL = "demo@example.com"
_DEVICES = [
    ("ios", "simulator", "iPhone 16 Pro", "18.2"),
    ("ios", "physical", "iPhone 15", "17.6"),
    ("ios", "simulator", "iPad Air 13-inch", "18.1"),
    ("android", "emulator", "Pixel 9", "15"),
    ("android", "physical", "Galaxy S24", "14"),
    ("android", "emulator", "Pixel Tablet", "14"),
]


@dataclass(frozen=True)
class Demo:
    secret: str
    team_organization_id: str | None


def load_demo(sessions_per_org: int = 240, seed: int = 7) -> Demo:
    """Load the demo data once; every call makes a new API key for the demo user."""
    existing = tenancy.find_user(DEMO_EMAIL)
    if existing is not None:
        team_id = next((row.id for row in tenancy.organizations_of(existing.id) if not row.personal), None)
        _, secret = api_keys.create_key(existing.id, name="demo")
        return Demo(secret, str(team_id) if team_id else None)

    rng = random.Random(seed)
    demo_user, personal = tenancy.create_user(DEMO_EMAIL, "Demo User")
    teammate, _ = tenancy.create_user("tester@example.com", "Tess Tester")
    viewer, _ = tenancy.create_user("viewer@example.com", "Vic Viewer")
    team = tenancy.create_organization("Acme Mobile QA")
    for user, role in ((demo_user, Role.admin), (teammate, Role.readwrite), (viewer, Role.readonly)):
        members.add_member(team.id, user.id, role)
    fleet = [devices.add_device(*spec) for spec in _DEVICES]

    now = utcnow()
    records = []
    for organization, users, count in ((team, (demo_user, teammate), sessions_per_org), (personal, (demo_user,), 12)):
        for _ in range(count):
            started = now - timedelta(minutes=rng.randint(60, 60 * 24 * 30))
            records.append(
                {
                    "organization": str(organization.id),
                    "user": str(rng.choice(users).id),
                    "device": str(rng.choice(fleet).id),
                    "createdAt": format_utc(started),
                    "releasedAt": format_utc(started + timedelta(minutes=rng.randint(1, 59))),
                }
            )
    # A few sessions of the team are still live, each on a device of its own.
    for minutes_ago, device in zip((3, 11, 25), fleet[:3], strict=True):
        started = now - timedelta(minutes=minutes_ago)
        records.append(
            {
                "organization": str(team.id),
                "user": str(teammate.id),
                "device": str(device.id),
                "createdAt": format_utc(started),
                "expiresAt": format_utc(started + timedelta(hours=4)),
            }
        )
    lines = [json.dumps(record) for record in records]
    session_import.import_sessions(lines)
    _, secret = api_keys.create_key(demo_user.id, name="demo")
    return Demo(secret, str(team.id))
