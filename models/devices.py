"""The device fleet: adding devices, taking them offline, and listing them with their state."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, exists, func, insert, select, text, update
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.timestamps import MICROSECOND, utcnow
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import InvalidInput, NotFound
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import Device, Platform, SessionRecord
from sessions_api.models.text import is_free_text

_LIMITS = {"type": 32, "name": 200, "os_version": 64}

# offline: disabled by an operator; in_use: a live session holds it; else available.
DEVICE_STATES = ("available", "in_use", "offline")
DEVICE_STATE = case(
    (col(Device.disabled), "offline"),
    (
        exists().where(col(SessionRecord.device_id) == col(Device.id), col(SessionRecord.released_at).is_(None)),
        "in_use",
    ),
    else_="available",
)

# What the API answers with, ids and instants rendered as its text (see models.as_text).
_DEVICE_VIEW = select(
    uuid_text(col(Device.id)).label("id"),
    col(Device.platform),
    col(Device.type),
    col(Device.name),
    col(Device.os_version),
    DEVICE_STATE.label("state"),
    rfc3339_text(col(Device.created_at)).label("created_at"),
)


def add_device(platform: str, type: str, name: str, os_version: str) -> Device:
    values = _validated(platform, type, name, os_version)
    with db.writing() as conn:
        (created_at,) = _added_at(conn=conn, count=1)
        device = Device.model_validate({"created_at": created_at, **values})
        conn.execute(insert(Device).values(device.model_dump()))
    return device


def _validated(platform: str, type: str, name: str, os_version: str) -> dict[str, str]:
    """A device's columns as the fleet keeps them; InvalidInput for what no start could match."""
    if platform not in {p.value for p in Platform}:
        raise InvalidInput(f"the platform must be one of {', '.join(p.value for p in Platform)}, not {platform!r}")
    values = {"type": type, "name": name, "os_version": os_version}
    for field, value in values.items():
        value = value.strip()
        if not 1 <= len(value) <= _LIMITS[field]:
            raise InvalidInput(f"the device {field.replace('_', ' ')} must have 1 to {_LIMITS[field]} characters")
        if not is_free_text(value, multiline=False):  # what a start asks for could never match it
            raise InvalidInput(f"the device {field.replace('_', ' ')} may hold no control or bidirectional characters")
        values[field] = value
    return {"platform": platform, **values}


def _added_at(*, conn: Connection, count: int) -> list[datetime]:
    """`count` instants after every device's (the fleet list's cursor is unique)."""
    if conn.dialect.name == "postgresql":  # adders take turns, so that added-at instants stay unique
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('devices', 0))"))
    newest = conn.execute(select(func.max(col(Device.created_at)))).scalar()
    first = max(utcnow(), newest + MICROSECOND) if newest is not None else utcnow()
    return [first + n * MICROSECOND for n in range(count)]


# Devices written per statement during an import.
_IMPORT_CHUNK = 1000
_IMPORT_FIELDS = {"platform", "type", "name", "osVersion"}


def import_devices(lines: Iterable[str], on_progress: Callable[[int], None] | None = None) -> int:
    """Add every device in `lines` (JSON lines of `platform`, `type`, `name` and `osVersion`, as
    listDevices names them) in one transaction; how many. `on_progress` hears how many are
    written so far, after each chunk. InvalidInput names the first bad line (1-based); nothing
    is added then."""
    parsed = [_parse_device(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    with db.writing() as conn:
        instants = _added_at(conn=conn, count=len(parsed))
        rows = [
            Device.model_validate({"created_at": created_at, **values}).model_dump()
            for values, created_at in zip(parsed, instants, strict=True)
        ]
        for start in range(0, len(rows), _IMPORT_CHUNK):
            conn.execute(insert(Device), rows[start : start + _IMPORT_CHUNK])
            if on_progress is not None:
                on_progress(min(start + _IMPORT_CHUNK, len(rows)))
    return len(rows)


def _parse_device(number: int, line: str) -> dict[str, str]:
    try:
        fields = json.loads(line)
    except ValueError:
        raise InvalidInput(f"line {number}: not a JSON object") from None
    if not isinstance(fields, dict):
        raise InvalidInput(f"line {number}: not a JSON object")
    unknown = sorted(set(fields) - _IMPORT_FIELDS)
    if unknown:
        raise InvalidInput(f"line {number}: unknown field {unknown[0]!r} (give platform, type, name and osVersion)")
    missing = [name for name in ("platform", "type", "name", "osVersion") if not isinstance(fields.get(name), str)]
    if missing:
        raise InvalidInput(f"line {number}: {missing[0]!r} must be a string")
    try:
        return _validated(fields["platform"], fields["type"], fields["name"], fields["osVersion"])
    except InvalidInput as invalid:
        raise InvalidInput(f"line {number}: {invalid}") from None


def set_disabled(device_id: uuid.UUID, disabled: bool) -> Device:
    """Take a device offline (never leased again; a session on it runs to its end), or back."""
    with db.writing() as conn:
        changed = conn.execute(
            update(Device).where(col(Device.id) == device_id).values(disabled=disabled).returning(Device)
        ).first()
    if changed is None:
        raise NotFound(f"no device with id {device_id}")
    return Device.model_validate(changed._mapping)


@dataclass(frozen=True)
class DeviceFilters:
    platform: str | None = None
    os_version: str | None = None
    state: str | None = None


def list_page(limit: int, before: datetime | None, filters: DeviceFilters = DeviceFilters()) -> Page:
    """Up to `limit` devices added strictly before `before`, newest first."""
    where = []
    if filters.platform is not None:
        where.append(col(Device.platform) == filters.platform)
    if filters.os_version is not None:
        where.append(col(Device.os_version) == filters.os_version)
    if filters.state is not None:
        where.append(DEVICE_STATE == filters.state)
    return read_page(_DEVICE_VIEW, col(Device.created_at), limit, before, *where)
