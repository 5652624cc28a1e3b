"""The `sessions-api` command for operators. Errors are one line and a non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import sys
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from sessions_api.cli.progress import ImportProgress
from sessions_api.cli.serve import serve as serve_command
from sessions_api.core import db
from sessions_api.core.settings import Settings
from sessions_api.core.timestamps import format_utc, parse_rfc3339
from sessions_api.handlers.usage import usage_body, usage_columns, usage_csv
from sessions_api.models import (
    Role,
    api_keys,
    devices,
    members,
    plans,
    schema_version,
    session_import,
    tenancy,
    usage,
    webhooks,
)
from sessions_api.models.artifacts import retention
from sessions_api.models.errors import DataError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not a usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def _instant(text: str) -> datetime:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 timestamp with an offset: {exc}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _plan_limit(text: str) -> int | None:
    return None if text == "default" else _positive(text)


def _queue_limit(text: str) -> int | None:
    if text == "default":
        return None
    if text.isascii() and text.isdigit() and int(text) <= 10_000:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 10000")


def _storage_limit(text: str) -> int | None:
    if text == "default":
        return None
    if text.isascii() and text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes")


def _retention_days(text: str) -> float | None:
    if text == "default":
        return None
    try:
        days = float(text)
    except ValueError:
        days = 0.0
    if not 0 < days <= 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days above 0 and at most 36500")
    return days


# An option not given: that limit of the plan stays as it is.
_UNCHANGED = plans.UNCHANGED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        db.configure(Settings.from_env())
        if args.run is not _db_upgrade:
            schema_version.ensure_current(migrate=getattr(args, "migrate", False))
        return args.run(args) or 0
    except (DataError, ValueError, schema_version.SchemaBehind) as exc:
        print(f"sessions-api: error: {exc}", file=sys.stderr)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"sessions-api: database error: {reason}", file=sys.stderr)
    except OSError as exc:
        print(f"sessions-api: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sessions-api", description="Operate the Sessions API server.")
    parser.add_argument(
        "--version", action="version", version=f"sessions-api {importlib.metadata.version('sessions-api')}"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--demo", action="store_true", help="load demo data and print a working API key")
    serve.add_argument("--workers", type=_positive, default=1, help="number of server processes (default 1)")
    serve.add_argument(
        "--graceful-timeout",
        type=_positive,
        default=30,
        help="seconds in-flight requests get to finish on SIGTERM (default 30)",
    )
    serve.add_argument(
        "--migrate", action="store_true", help="apply pending migrations first instead of refusing to start"
    )
    serve.set_defaults(run=serve_command)

    database = commands.add_parser("db", help="manage the database schema").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    upgrade = database.add_parser("upgrade", help="apply every pending migration")
    upgrade.add_argument("--json", action="store_true", help="print the result as JSON")
    upgrade.set_defaults(run=_db_upgrade)

    org = _group(commands, "org", "organizations")
    create = _command(org, "create", "create an organization", _org_create)
    create.add_argument("--name", required=True, help="its name (1 to 200 characters)")
    plan = _command(
        org,
        "plan",
        "set an organization's plan: the most live sessions and queued starts it may have, "
        "the bytes its artifacts may hold and how long they are kept",
        _org_plan,
    )
    plan.add_argument("--org", required=True, type=_uuid, help="the organization's id")
    plan.add_argument(
        "--max-live",
        type=_plan_limit,
        default=_UNCHANGED,
        help="most live sessions at once, or 'default' for its kind's (SESSIONS_API_[SELF_SERVICE_]MAX_LIVE_SESSIONS)",
    )
    plan.add_argument(
        "--max-queued",
        type=_queue_limit,
        default=_UNCHANGED,
        help="most queued starts at once (0: no queue), or 'default' "
        "for its kind's (SESSIONS_API_[SELF_SERVICE_]MAX_QUEUED_SESSIONS)",
    )
    plan.add_argument(
        "--max-storage-bytes",
        type=_storage_limit,
        default=_UNCHANGED,
        help="most bytes its artifacts may hold, or 'default' for its kind's "
        "(SESSIONS_API_[SELF_SERVICE_]MAX_STORAGE_BYTES)",
    )
    plan.add_argument(
        "--artifact-retention-days",
        type=_retention_days,
        default=_UNCHANGED,
        help="days an available artifact is kept (fractions allowed; applies to uploads completed "
        "from now on), or 'default' (SESSIONS_API_ARTIFACT_RETENTION_DAYS)",
    )

    user = _group(commands, "user", "users")
    create = _command(user, "create", "create a user and their Personal organization", _user_create)
    create.add_argument("--email", required=True, help="their email address (unique)")
    create.add_argument("--name", help="their name, as shown to the members of their organizations")

    member = _group(commands, "member", "memberships")
    add = _command(member, "add", "add a user to an organization (or change their role)", _member_add)
    add.add_argument("--org", required=True, type=_uuid, help="the organization's id")
    add.add_argument("--user", required=True, type=_uuid, help="the user's id")
    add.add_argument("--role", required=True, choices=[role.value for role in Role], help="their role in it")

    key = _group(commands, "key", "API keys")
    create = _command(key, "create", "create an API key; its secret is printed once", _key_create)
    create.add_argument("--user", required=True, type=_uuid, help="the id of the user the key acts as")
    create.add_argument("--org", type=_uuid, help="bind the key to this organization")
    create.add_argument("--name", help="what the key is for (shown in listApiKeys)")
    create.add_argument(
        "--expires-at", type=_instant, help="RFC 3339 instant with an offset from which the key fails (default never)"
    )
    revoke = _command(key, "revoke", "revoke an API key", _key_revoke)
    revoke.add_argument("key_id", type=_uuid, help="the key's id")

    device = _group(commands, "device", "devices")
    add = _command(device, "add", "add a device to the fleet", _device_add)
    add.add_argument("--platform", required=True, help="ios or android")
    add.add_argument("--type", required=True, help="its kind: simulator, emulator or physical")
    add.add_argument("--name", required=True, help="its model name, e.g. 'iPhone 16'")
    add.add_argument("--os-version", required=True, help="the operating system version it runs")
    for action, help_text in (
        ("disable", "take a device offline: never leased; a session on it runs to its end"),
        ("enable", "bring a disabled device back"),
    ):
        toggle = _command(device, action, help_text, _device_toggle)
        toggle.add_argument("device_id", type=_uuid, help="the device's id")
    imported = _command(
        device,
        "import",
        "add devices from a JSON lines file ('-' for stdin) of platform, type, name and osVersion",
        _device_import,
    )
    imported.add_argument("file", help="the JSON lines file, or '-' for stdin (progress shows on a terminal's stderr)")

    secrets = _group(commands, "secrets", "secrets kept at rest (SESSIONS_API_SECRET_KEYS)")
    _command(
        secrets,
        "rotate",
        "re-seal every webhook signing secret under the first key of SESSIONS_API_SECRET_KEYS",
        _secrets_rotate,
    )

    artifacts = _group(commands, "artifacts", "session artifacts")
    sweep = _command(
        artifacts,
        "sweep",
        "end what has ended now: artifacts past their retention and uploads never completed "
        "(as the server's sweep does); with --orphans, also delete every stored object no artifact names",
        _artifacts_sweep,
    )
    sweep.add_argument(
        "--orphans", action="store_true", help="list the whole store, in pages, and delete objects without an artifact"
    )
    sweep.add_argument(
        "--max-objects",
        type=_positive,
        default=1_000_000,
        help="stop listing after this many objects (default 1000000); run again to go on",
    )

    usage_report = commands.add_parser("usage", help="print an organization's device usage (as getUsage answers it)")
    usage_report.add_argument("--org", required=True, type=_uuid, help="the organization's id")
    usage_report.add_argument("--from", dest="start", required=True, type=_instant, help="first instant (RFC 3339)")
    usage_report.add_argument("--to", dest="end", required=True, type=_instant, help="end instant, excluded (RFC 3339)")
    usage_report.add_argument(
        "--granularity", choices=usage.GRANULARITIES, default="day", help="bucket size (default day)"
    )
    usage_report.add_argument("--group-by", choices=list(usage.GROUP_COLUMNS), help="split buckets by this value")
    shown = usage_report.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the API's JSON body")
    shown.add_argument("--csv", action="store_true", help="print the API's CSV")
    usage_report.set_defaults(run=_usage)

    session = _group(commands, "session", "sessions")
    imp = _command(session, "import", "import sessions from a JSON lines file ('-' for stdin)", _session_import)
    imp.add_argument("file", help="the JSON lines file, or '-' for stdin (progress shows on a terminal's stderr)")
    return parser


def _group(commands, name: str, what: str):
    return commands.add_parser(name, help=f"manage {what}").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )


def _command(group, name: str, help_text: str, run: Callable) -> argparse.ArgumentParser:
    command = group.add_parser(name, help=help_text)
    command.add_argument("--json", action="store_true", help="print the result as JSON")
    command.set_defaults(run=run)
    return command


def _report(args, result: dict, text: str) -> None:
    print(json.dumps(result) if args.json else text)


def _org_create(args) -> None:
    org = tenancy.create_organization(args.name)
    _report(args, {"id": str(org.id), "name": org.name}, f"organization {org.id} ({org.name})")


def _org_plan(args) -> None:
    limits = (args.max_live, args.max_queued, args.max_storage_bytes, args.artifact_retention_days)
    if all(limit is _UNCHANGED for limit in limits):
        raise ValueError("give --max-live, --max-queued, --max-storage-bytes or --artifact-retention-days")
    plan = plans.set_plan(args.org, *limits)
    _report(
        args,
        {
            "id": str(args.org),
            "plan": {
                "maxLiveSessions": plan.max_live_sessions,
                "maxQueuedSessions": plan.max_queued_sessions,
                "maxStorageBytes": plan.max_storage_bytes,
                "artifactRetentionDays": plan.artifact_retention_days,
            },
        },
        f"organization {args.org}: at most {plan.max_live_sessions} live sessions, "
        f"{plan.max_queued_sessions} queued starts and {plan.max_storage_bytes} bytes of artifacts, "
        f"kept {plan.artifact_retention_days:g} days",
    )


def _artifacts_sweep(args) -> None:
    expired, failed = 0, 0
    while batch := retention.expire_artifacts():
        expired += batch
    while batch := retention.fail_abandoned_uploads():
        failed += batch
    listed = removed = 0
    if args.orphans:
        after = ""
        while listed < args.max_objects:
            done = retention.sweep_orphans(after, min(retention.BATCH, args.max_objects - listed))
            listed, removed, after = listed + done.listed, removed + done.removed, done.after
            if not after:
                break
    _report(
        args,
        {"expired": expired, "failed": failed, "listed": listed, "orphansRemoved": removed},
        f"{expired} artifact(s) expired, {failed} abandoned upload(s) failed"
        + (f", {removed} orphaned object(s) removed of {listed} listed" if args.orphans else ""),
    )


def _user_create(args) -> None:
    user, personal = tenancy.create_user(args.email, args.name)
    result = {"id": str(user.id), "email": user.email, "defaultOrganization": str(personal.id)}
    _report(args, result, f"user {user.id} ({user.email}), default organization {personal.id}")


def _member_add(args) -> None:
    membership = members.add_member(args.org, args.user, Role(args.role))
    result = {"organization": str(args.org), "user": str(args.user), "role": membership.role.value}
    _report(args, result, f"user {args.user} is {membership.role.value} of organization {args.org}")


def _key_create(args) -> None:
    key, secret = api_keys.create_key(args.user, args.org, args.name, args.expires_at)
    result = {
        "id": str(key.id),
        "secret": secret,
        "user": str(key.user_id),
        "organization": str(key.organization_id) if key.organization_id else None,
        "expiresAt": format_utc(key.expires_at) if key.expires_at else None,
    }
    _report(args, result, f"key {key.id}\nsecret (shown once, store it now): {secret}")


def _key_revoke(args) -> None:
    key = api_keys.revoke_key(args.key_id)
    revoked_at = key.revoked_at.isoformat() if key.revoked_at else None
    _report(args, {"id": str(key.id), "revokedAt": revoked_at}, f"key {key.id} revoked")


def _device_add(args) -> None:
    device = devices.add_device(args.platform, args.type, args.name, args.os_version)
    result = {
        "id": str(device.id),
        "platform": device.platform,
        "type": device.type,
        "name": device.name,
        "osVersion": device.os_version,
    }
    _report(args, result, f"device {device.id} ({device.platform} {device.type} {device.name} {device.os_version})")


def _device_toggle(args) -> None:
    device = devices.set_disabled(args.device_id, args.action == "disable")
    state = "offline" if device.disabled else "enabled"
    _report(args, {"id": str(device.id), "disabled": device.disabled}, f"device {device.id} {state}")


def _session_import(args) -> None:
    count = _importing(args.file, session_import.import_sessions)
    _report(args, {"imported": count}, f"imported {count} sessions")


def _device_import(args) -> None:
    count = _importing(args.file, devices.import_devices)
    _report(args, {"imported": count}, f"added {count} devices")


def _importing(file: str, read: Callable[..., int]) -> int:
    """`read(lines, on_progress=...)` over the file ('-': stdin), its progress on a terminal."""
    with contextlib.ExitStack() as closing:
        source = sys.stdin if file == "-" else closing.enter_context(open(file, encoding="utf-8"))
        progress = closing.enter_context(ImportProgress(source))
        return read(progress.counting(source), on_progress=progress.rows)


def _usage(args) -> None:
    rows = usage.report(args.org, args.start, args.end, args.granularity, args.group_by)
    if args.csv:
        sys.stdout.write(usage_csv(rows, args.group_by))
        return
    body = usage_body(rows, args.group_by)
    if args.json:
        print(json.dumps(body))
        return
    shown = body["data"]
    columns = usage_columns(args.group_by)
    cells = [columns] + [[f"{row[c]:.2f}" if c == "deviceMinutes" else str(row[c]) for c in columns] for row in shown]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:  # text left, numbers right
        print(
            "  ".join(
                cell.ljust(w) if i < len(columns) - 4 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )


def _secrets_rotate(args) -> None:
    resealed = webhooks.reseal_secrets()
    _report(args, {"resealed": resealed}, f"{resealed} webhook endpoint(s) resealed under the first key")


def _db_upgrade(args) -> None:
    before, after = schema_version.upgrade()
    text = (
        f"database schema upgraded from {before or 'nothing'} to {after}"
        if before != after
        else f"database schema is current ({after})"
    )
    _report(args, {"from": before, "to": after}, text)
