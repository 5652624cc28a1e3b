"""Bulk import of sessions from JSON lines: validated line by line, all or nothing.

Each line is an object with `organization`, `user` and `device` (ids), and optional `id`,
`createdAt`, `releasedAt` and `expiresAt` (RFC 3339 with an offset; `expiresAt` defaults to
`createdAt` plus the default session duration), and the session's facts as the API names
them (`name`, `build`, `tags`, `metadata`, `result`, `resultReason`: models.session_facts).
The user must be a member of the organization. A device may have one live session (no
`releasedAt`) at most. A `createdAt` already taken in the organization moves on to the next
free microsecond, as for every new session.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, Connection, select
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.timestamps import parse_rfc3339
from sessions_api.models import schema_version, session_facts
from sessions_api.models.errors import InvalidInput
from sessions_api.models.sessions import NewSession, insert_sessions
from sessions_api.models.tables import (
    Device,
    Membership,
    Organization,
    SessionRecord,
    User,
)

_CHUNK = 5000
# SQLite's page cache during an import (KiB; its default is 2 MiB): the sessions' indexes take
# rows in random order, and at millions of rows a small cache rereads their pages all the time.
_SQLITE_IMPORT_CACHE_KIB = 256 * 1024
_FIELDS = {"id", "organization", "user", "device", "createdAt", "releasedAt", "expiresAt", *session_facts.COLUMNS}
_REQUIRED = ("organization", "user", "device")


def import_sessions(lines: Iterable[str], on_progress: Callable[[int], None] | None = None) -> int:
    """Import every session in `lines` in one transaction; returns how many were imported.
    `on_progress` hears how many are written so far, after each chunk.

    Raises InvalidInput naming the first bad line (1-based); nothing is imported then.
    """
    count = 0
    with db.writing() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            # The table grows by millions of rows inside this one transaction, which no statistics
            # see: planned as the small table they describe, every lookup of the checks (each by
            # an index) would scan what the import has written so far, quadratic in the file.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        if sqlite:
            default_cache = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
            conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_IMPORT_CACHE_KIB}")
        try:
            checker = _ReferenceChecker(conn)
            for chunk in _chunks(_parse(lines), _CHUNK):
                checker.check(chunk)
                insert_sessions(conn=conn, batch=[new for _, new in chunk])
                count += len(chunk)
                if on_progress is not None:
                    on_progress(count)
            schema_version.refresh_statistics(conn)  # the planner sees the history just written
        finally:
            if sqlite:  # the connection goes back to the pool with its usual cache
                conn.exec_driver_sql(f"PRAGMA cache_size={int(default_cache)}")
    return count


def _chunks(items: Iterator[tuple[int, NewSession]], size: int) -> Iterator[list[tuple[int, NewSession]]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _parse(lines: Iterable[str]) -> Iterator[tuple[int, NewSession]]:
    seen_ids: set[uuid.UUID] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        new = _parse_line(number, line)
        if new.id is not None:
            if new.id in seen_ids:
                raise InvalidInput(f"line {number}: the id {new.id} appears twice in the file")
            seen_ids.add(new.id)
        yield number, new


def _parse_line(number: int, line: str) -> NewSession:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"line {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise InvalidInput(f"line {number}: expected a JSON object")
    unknown = set(record) - _FIELDS
    if unknown:
        raise InvalidInput(f"line {number}: unknown field(s) {', '.join(sorted(unknown))}")
    for field in _REQUIRED:
        if field not in record:
            raise InvalidInput(f"line {number}: '{field}' is required")
    created_at = _timestamp(number, record, "createdAt")
    released_at = _timestamp(number, record, "releasedAt")
    if released_at is not None and created_at is not None and released_at < created_at:
        raise InvalidInput(f"line {number}: 'releasedAt' is before 'createdAt'")
    if released_at is not None and created_at is None:
        raise InvalidInput(f"line {number}: 'releasedAt' needs a 'createdAt'")
    expires_at = _timestamp(number, record, "expiresAt")
    if expires_at is not None and (created_at is None or expires_at < created_at):
        raise InvalidInput(f"line {number}: 'expiresAt' needs a 'createdAt' before it")
    facts = {fact: record[fact] for fact in session_facts.COLUMNS if fact in record}
    try:
        stored = session_facts.stored(session_facts.checked(facts)) if facts else {}
    except InvalidInput as exc:
        raise InvalidInput(f"line {number}: {exc}") from None
    return NewSession(
        organization_id=_uuid(number, record, "organization"),
        user_id=_uuid(number, record, "user"),
        device_id=_uuid(number, record, "device"),
        created_at=created_at,
        released_at=released_at,
        id=_uuid(number, record, "id") if record.get("id") is not None else None,
        expires_at=expires_at,
        facts=stored,
        tags=session_facts.tags_of(facts),
    )


def _uuid(number: int, record: dict[str, Any], field: str) -> uuid.UUID:
    value = record[field]
    try:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"line {number}: '{field}' must be a UUID string") from None


def _timestamp(number: int, record: dict[str, Any], field: str) -> datetime | None:
    value = record.get(field)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidInput(f"line {number}: '{field}' is not an RFC 3339 timestamp with an offset ({exc})") from None


class _ReferenceChecker:
    """Checks that every referenced row exists, remembering what it has seen across chunks."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._known: dict[object, set[Any]] = {Organization: set(), User: set(), Device: set(), Membership: set()}
        self._held_devices: set[uuid.UUID] = set()  # devices with a live session, in the database or the file
        self._loaded_holds: set[uuid.UUID] = set()

    def check(self, chunk: list[tuple[int, NewSession]]) -> None:
        self._load(Organization, {new.organization_id for _, new in chunk})
        self._load(User, {new.user_id for _, new in chunk})
        self._load(Device, {new.device_id for _, new in chunk})
        self._load_memberships({(new.organization_id, new.user_id) for _, new in chunk})
        taken_ids = self._taken_session_ids({new.id for _, new in chunk if new.id is not None})
        self._load_holds({new.device_id for _, new in chunk if new.released_at is None})
        for number, new in chunk:
            for table, value, what in (
                (Organization, new.organization_id, "organization"),
                (User, new.user_id, "user"),
                (Device, new.device_id, "device"),
            ):
                if value not in self._known[table]:
                    raise InvalidInput(f"line {number}: no {what} with id {value}")
            if (new.organization_id, new.user_id) not in self._known[Membership]:
                raise InvalidInput(
                    f"line {number}: user {new.user_id} is not a member of organization {new.organization_id}"
                )
            if new.id in taken_ids:
                raise InvalidInput(f"line {number}: a session with id {new.id} already exists")
            if new.released_at is None:
                if new.device_id in self._held_devices:
                    raise InvalidInput(f"line {number}: device {new.device_id} already has a live session")
                self._held_devices.add(new.device_id)

    def _load(self, table: Any, ids: set[uuid.UUID]) -> None:
        rows = self._select_in((table.id,), table.id, ids - self._known[table])
        self._known[table].update(row[0] for row in rows)

    def _load_memberships(self, pairs: set[tuple[uuid.UUID, uuid.UUID]]) -> None:
        organizations = {org for org, _ in pairs - self._known[Membership]}
        columns = (col(Membership.organization_id), col(Membership.user_id))
        rows = self._select_in(columns, col(Membership.organization_id), organizations)
        self._known[Membership].update((row[0], row[1]) for row in rows)

    def _load_holds(self, device_ids: set[uuid.UUID]) -> None:
        pending = device_ids - self._loaded_holds
        live = col(SessionRecord.released_at).is_(None)
        rows = self._select_in((col(SessionRecord.device_id),), col(SessionRecord.device_id), pending, live)
        self._held_devices.update(row[0] for row in rows)
        self._loaded_holds |= pending

    def _taken_session_ids(self, ids: set[uuid.UUID]) -> set[uuid.UUID]:
        return {row[0] for row in self._select_in((col(SessionRecord.id),), col(SessionRecord.id), ids)}

    def _select_in(
        self, columns: tuple[Any, ...], key: Any, values: set[Any], *where: ColumnElement[bool]
    ) -> Iterator[Sequence[Any]]:
        """Rows whose `key` is one of `values` (and that meet `where`), in IN queries of bounded size."""
        pending = list(values)
        for start in range(0, len(pending), 500):
            yield from self._conn.execute(select(*columns).where(key.in_(pending[start : start + 500]), *where))
