"""The benchmark's data, made through the product's own paths.

`python -m bench.dataset PARAMS_JSON OUT_DIR` (run by `bench.run` with `DATABASE_URL` set)
creates the schema, the device fleet, users (each with their Personal organization), team
organizations, memberships and API keys through the data layer (the functions the CLI
calls), and writes the sessions as a JSON lines file for the import command, which
`bench.run` then runs (`sessions-api session import FILE`) and times. It prints the
manifest (ids and secrets the load needs) as JSON on stdout.

Everything is drawn from a seeded generator: the same parameters give the same data.
"""

from __future__ import annotations

import json
import os
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

PLATFORMS = {
    "ios": (
        ["simulator", "physical"],
        [
            "iPhone 16 Pro",
            "iPhone 16",
            "iPhone 15",
            "iPhone 14 Plus",
            "iPhone SE (3rd generation)",
            "iPad Air 13-inch",
            "iPad Pro 11-inch",
            "iPad mini",
        ],
        ["16.7", "17.5", "17.6", "18.1", "18.2", "18.3"],
    ),
    "android": (
        ["emulator", "physical"],
        [
            "Pixel 9",
            "Pixel 9 Pro",
            "Pixel 8a",
            "Pixel Tablet",
            "Galaxy S24",
            "Galaxy A55",
            "Galaxy Tab S9",
            "OnePlus 12",
            "Xperia 1 VI",
            "Moto G Power",
        ],
        ["12", "13", "14", "15"],
    ),
}
FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Guido",
    "Karen",
    "Donald",
    "Anita",
    "Tim",
    "Hedy",
    "John",
    "Sophie",
    "Niklaus",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "van Rossum",
    "Sparck Jones",
    "Knuth",
    "Borg",
    "Berners-Lee",
    "Lamarr",
    "Backus",
    "Wilson",
    "Wirth",
]
ROLES = ["admin"] + ["readwrite"] * 5 + ["readonly"] * 4
# Sessions run up to this instant, over `days` before it (fixed, so that the data repeats).
END = datetime(2026, 11, 1, tzinfo=UTC)


def default_params(sessions: int = 1_000_000) -> dict:
    return {
        "sessions": sessions,
        "organizations": 20,
        "big_share": 0.5,  # of all sessions, in the one big organization
        "devices": 2000,
        "users": 600,
        "days": 730,
        "burst_share": 0.02,  # sessions started at the same instant as the one before
        "seed": 6,
        "format": 2,  # bump when the generated data changes shape
    }


def small_params(sessions: int = 600) -> dict:
    """A few of everything: for the test of the correctness check."""
    return {**default_params(sessions), "organizations": 4, "devices": 30, "users": 40}


def _utc_text(micros: int) -> str:
    return (END + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(params: dict, out_dir: Path) -> dict:
    from sessions_api.core import db
    from sessions_api.core.settings import Settings
    from sessions_api.models import Role, api_keys, devices, members, schema_version, tenancy

    db.configure(Settings.from_env())
    schema_version.ensure_current()  # an empty database gets the migrated schema
    rng = random.Random(params["seed"])

    fleet = []
    for index in range(params["devices"]):
        platform = "ios" if index % 5 < 2 else "android"
        types, names, versions = PLATFORMS[platform]
        device = devices.add_device(platform, rng.choice(types), rng.choice(names), rng.choice(versions))
        fleet.append(str(device.id))

    users = []
    for index in range(params["users"]):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        user, _personal = tenancy.create_user(f"user{index:04d}@example.com", name)
        users.append(user)

    organizations = [tenancy.create_organization(f"Team {index:02d}") for index in range(params["organizations"])]
    big = organizations[0]
    members_of: dict[str, list[str]] = {}
    memberships: dict[str, list[str]] = {}  # user -> organizations
    for index, organization in enumerate(organizations):
        size = min(len(users), 200 if index == 0 else rng.randint(5, 60))
        chosen = rng.sample(users, size)
        members_of[str(organization.id)] = [str(user.id) for user in chosen]
        for user in chosen:
            members.add_member(organization.id, user.id, Role(rng.choice(ROLES)))
            memberships.setdefault(str(user.id), []).append(organization.id)

    for user in users:  # a key each, a second for some; a few bound, a few revoked
        for _ in range(1 + (rng.random() < 0.2)):
            orgs = memberships.get(str(user.id), [])
            bound = rng.choice(orgs) if orgs and rng.random() < 0.1 else None
            key, _secret = api_keys.create_key(user.id, bound, name="ci")
            if rng.random() < 0.05:
                api_keys.revoke_key(key.id)

    # The callers the load uses: a readonly member of the big organization and one more.
    bench_user, bench_personal = tenancy.create_user("bench@example.com", "Bench Caller")
    members.add_member(big.id, bench_user.id, Role.readonly)
    members.add_member(organizations[1].id, bench_user.id, Role.readwrite)
    _, secret = api_keys.create_key(bench_user.id, name="bench")
    _, bound_secret = api_keys.create_key(bench_user.id, big.id, name="bench bound")
    revoked, revoked_secret = api_keys.create_key(bench_user.id, name="bench revoked")
    api_keys.revoke_key(revoked.id)
    # An admin of the big organization, for what only admins read (getUsage).
    bench_admin, _ = tenancy.create_user("bench-admin@example.com", "Bench Admin")
    members.add_member(big.id, bench_admin.id, Role.admin)
    _, admin_secret = api_keys.create_key(bench_admin.id, name="bench admin")
    outsider, _ = tenancy.create_user("outsider@example.com", "Out Sider")
    _, outsider_secret = api_keys.create_key(outsider.id, name="outsider")

    # Sessions: half in the big organization, the rest over the others by a Zipf-like law.
    total = params["sessions"]
    weights = [1 / (rank + 1) for rank in range(len(organizations) - 1)]
    rest = total - int(total * params["big_share"])
    counts = [total - rest] + [int(rest * w / sum(weights)) for w in weights]
    counts[1] += total - sum(counts)
    span = params["days"] * 86_400 * 1_000_000
    events = []  # (micros before END, organization index)
    for org_index, count in enumerate(counts):
        previous = None
        for _ in range(count):
            if previous is not None and rng.random() < params["burst_share"]:
                at = previous  # a CI burst: the same instant (the import moves it on by 1 µs)
            else:
                at = -rng.randrange(span)
            events.append((at, org_index))
            previous = at
    events.sort()  # a backfill exported in time order

    # Named for this build alone: two builds of one size (SQLite and PostgreSQL) may run at once.
    lines_path = out_dir / f"sessions-{total}-{os.getpid()}.jsonl"
    sample_ids: list[str] = []
    other_id = None
    device_weights = [1 / (1 + i % 50) for i in range(len(fleet))]  # some devices are popular
    device_picks = rng.choices(fleet, weights=device_weights, k=len(events))
    big_times = []
    held: set[str] = set()
    with open(lines_path, "w", encoding="utf-8") as out:
        for (at, org_index), device in zip(events, device_picks, strict=True):
            organization = organizations[org_index]
            session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            record = {
                "id": session_id,
                "organization": str(organization.id),
                "user": rng.choice(members_of[str(organization.id)]),
                "device": device,
                "createdAt": _utc_text(at),
            }
            # Live sessions only in the last day, each on a device no other live session holds
            # (the product allows one), and expiring well after the benchmark.
            if at < -86_400_000_000 or rng.random() < 0.7 or device in held:
                record["releasedAt"] = _utc_text(at + rng.randint(60, 7200) * 1_000_000)
            else:
                held.add(device)
                record["expiresAt"] = _utc_text(at + 30 * 86_400_000_000)
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            if org_index == 0:
                big_times.append(at)
                if rng.random() < 20_000 / max(1, counts[0]):
                    sample_ids.append(session_id)
            elif other_id is None:
                other_id = session_id

    # `before` for the deep page: the instant of the 150th-oldest session of the big
    # organization (so the page is full and has a nextCursor), pushed 1 µs later.
    deep = big_times[min(149, len(big_times) - 1)] + 1
    ids_path = out_dir / f"ids-{total}-{os.getpid()}.txt"
    ids_path.write_text("\n".join(sample_ids[:10_000]) + "\n")
    return {
        "params": params,
        "lines": str(lines_path),
        "ids": str(ids_path),
        "big_organization": str(big.id),
        "big_organization_sessions": counts[0],
        "second_organization": str(organizations[1].id),
        "other_organization": str(organizations[2].id),
        "personal_organization": str(bench_personal.id),
        "other_organization_session": other_id,
        "deep_before": _utc_text(deep),
        "secret": secret,
        "admin_secret": admin_secret,
        "bound_secret": bound_secret,
        "revoked_secret": revoked_secret,
        "outsider_secret": outsider_secret,
    }


def main(argv: list[str]) -> None:
    params = json.loads(argv[0])
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(build(params, out_dir)))


if __name__ == "__main__":
    main(sys.argv[1:])
