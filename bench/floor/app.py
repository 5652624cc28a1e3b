"""The floor: the same contract as the product in bare Starlette with driver-level SQL and
nothing else: one connection per process, used straight from the event loop (no thread
hand-off), two statements per request (key + organization + membership in one, the page in
the other), tuples to dicts to orjson. As close to the limit as Python gets for this
workload; not a design to copy (it blocks the loop on every query).

`DATABASE_URL` names the database: `sqlite:///PATH` (sqlite3) or `postgresql+psycopg://...`
(psycopg 3). Run: `uvicorn bench.floor.app:app --no-access-log`.
"""

from __future__ import annotations

import hmac
import os
import sqlite3
import uuid
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from bench.contract import (
    FORBIDDEN,
    KEY_FORMAT,
    LAST_USED_INTERVAL,
    NOT_FOUND,
    UNAUTHENTICATED,
    UUID_PATTERN,
    duration_seconds,
    facts_json,
    invalid_request,
    parse_before,
    secret_hash,
    state_history,
)
from bench.request_id import request_id

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///./sessions.db")

_AUTH = """
SELECT k.id, k.secret_hash, k.organization_id, k.revoked_at, k.last_used_at, m.role,
       COALESCE({org}, k.organization_id, u.default_organization_id)
FROM api_keys k
JOIN users u ON u.id = k.user_id
LEFT JOIN memberships m
  ON m.user_id = k.user_id AND m.organization_id = COALESCE({org}, k.organization_id, u.default_organization_id)
WHERE k.lookup_id = {p}
"""
_COLUMNS = """
SELECT s.id, s.organization_id, s.user_id, s.device_id, d.platform, d.type, d.name, d.os_version,
       s.created_at, s.released_at, s.expires_at, s.name, s.build, s.tags, s.metadata_json, s.result, s.result_reason,
       s.artifact_count, (SELECT r.created_at FROM session_requests r WHERE r.session_id = s.id LIMIT 1)
FROM sessions s JOIN devices d ON d.id = s.device_id
"""
_PAGE = _COLUMNS + "WHERE s.organization_id = {p} ORDER BY s.created_at DESC LIMIT {p}"
_PAGE_BEFORE = _COLUMNS + "WHERE s.organization_id = {p} AND s.created_at < {p} ORDER BY s.created_at DESC LIMIT {p}"
_ONE = _COLUMNS + "WHERE s.id = {p} AND s.organization_id = {p}"
_TOUCH = "UPDATE api_keys SET last_used_at = {p} WHERE id = {p}"


class _Sqlite:
    """SQLite as SQLAlchemy stores it: UUIDs as 32 hex digits, instants as UTC text."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=5000")
        p = "?"
        self.auth_sql = _AUTH.format(org="?", p=p)
        self.page_sql, self.before_sql = _PAGE.format(p=p), _PAGE_BEFORE.format(p=p)
        self.one_sql, self.touch_sql = _ONE.format(p=p), _TOUCH.format(p=p)

    @staticmethod
    def uuid_param(value: uuid.UUID) -> str:
        return value.hex

    @staticmethod
    def time_param(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    @staticmethod
    def same_id(stored, wanted: uuid.UUID) -> bool:
        return stored == wanted.hex

    @staticmethod
    def parse_time(stored: str | None) -> datetime | None:
        return datetime.fromisoformat(stored).replace(tzinfo=UTC) if stored else None

    def row_json(self, row) -> dict:
        sid, org, user, device, platform, dtype, name, os_version, created, released, expires, *facts, queued = row
        text = {moment: f"{moment[:10]}T{moment[11:]}Z" for moment in (created, released, expires, queued) if moment}
        return {
            "id": _dashed(sid),
            "organization": _dashed(org),
            "user": _dashed(user),
            "device": {
                "id": _dashed(device),
                "platform": platform,
                "type": dtype,
                "name": name,
                "osVersion": os_version,
            },
            "createdAt": f"{created[:10]}T{created[11:]}Z",
            "releasedAt": f"{released[:10]}T{released[11:]}Z" if released else None,
            "expiresAt": f"{expires[:10]}T{expires[11:]}Z",
            **facts_json(*facts),
            "durationSeconds": duration_seconds(self.parse_time(created), self.parse_time(released)),
            "stateHistory": state_history(text[created], text.get(released), text[expires], text.get(queued)),
        }

    def cursor_json(self, row) -> str:
        created = row[8]
        return f"{created[:10]}T{created[11:]}Z"

    def fetchall(self, sql: str, params) -> list:
        return self.conn.execute(sql, params).fetchall()

    def write(self, sql: str, params) -> None:
        self.conn.execute(sql, params)


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        p = "%s"
        self.auth_sql = _AUTH.format(org="%s::uuid", p=p)
        self.page_sql, self.before_sql = _PAGE.format(p=p), _PAGE_BEFORE.format(p=p)
        self.one_sql, self.touch_sql = _ONE.format(p=p), _TOUCH.format(p=p)

    @staticmethod
    def uuid_param(value: uuid.UUID) -> uuid.UUID:
        return value

    @staticmethod
    def time_param(moment: datetime) -> datetime:
        return moment

    @staticmethod
    def same_id(stored, wanted: uuid.UUID) -> bool:
        return stored == wanted

    @staticmethod
    def parse_time(stored: datetime | None) -> datetime | None:
        return stored

    def row_json(self, row) -> dict:
        sid, org, user, device, platform, dtype, name, os_version, created, released, expires, *facts, queued = row
        return {
            "id": str(sid),
            "organization": str(org),
            "user": str(user),
            "device": {"id": str(device), "platform": platform, "type": dtype, "name": name, "osVersion": os_version},
            "createdAt": _utc(created),
            "releasedAt": _utc(released) if released else None,
            "expiresAt": _utc(expires),
            **facts_json(*facts),
            "durationSeconds": duration_seconds(created, released),
            "stateHistory": state_history(
                _utc(created), _utc(released) if released else None, _utc(expires), _utc(queued) if queued else None
            ),
        }

    def cursor_json(self, row) -> str:
        return _utc(row[8])

    def fetchall(self, sql: str, params) -> list:
        return self.conn.execute(sql, params).fetchall()

    def write(self, sql: str, params) -> None:
        self.conn.execute(sql, params)


def _dashed(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


db = _Sqlite(DATABASE_URL.split("///", 1)[1]) if DATABASE_URL.startswith("sqlite") else _Postgres(DATABASE_URL)


def _json(scope, status: int, body, extra: dict | None = None) -> Response:
    headers = {"x-request-id": request_id(scope).decode()}
    if extra:
        headers.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class _Denied(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers


def _unauthenticated() -> _Denied:
    # A new exception each time: re-raising one instance would grow its traceback forever.
    return _Denied(401, UNAUTHENTICATED, {"www-authenticate": "Bearer"})


def _organization(request) -> object:
    """The organization the request acts on (in the driver's id form), or _Denied."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    match = KEY_FORMAT.fullmatch(token.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise _unauthenticated()
    lookup_id, secret = match.groups()
    requested_text = request.headers.get("x-organization-id")
    requested = None
    if requested_text is not None:
        try:
            requested = uuid.UUID(requested_text)
        except ValueError:
            requested = None
    param = db.uuid_param(requested) if requested is not None else None
    rows = db.fetchall(db.auth_sql, (param, param, lookup_id))
    if not rows:
        raise _unauthenticated()
    key_id, stored_hash, bound, revoked_at, last_used_at, role, selected = rows[0]
    if not hmac.compare_digest(stored_hash, secret_hash(secret)) or revoked_at is not None:
        raise _unauthenticated()
    if requested_text is not None and (requested is None or (bound is not None and not db.same_id(bound, requested))):
        raise _Denied(403, FORBIDDEN)
    if role is None:
        raise _Denied(403, FORBIDDEN)
    now = datetime.now(UTC)
    last_used = db.parse_time(last_used_at)
    if last_used is None or now - last_used >= LAST_USED_INTERVAL:
        db.write(db.touch_sql, (db.time_param(now), key_id))
    return selected


async def list_sessions(request) -> Response:
    scope = request.scope
    try:
        organization = _organization(request)
    except _Denied as denied:
        return _json(scope, denied.status, denied.body, denied.headers)
    query = request.query_params
    try:
        limit = int(query.get("limit", "100"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        return _json(scope, 400, invalid_request("Query parameter 'limit' must be a whole number from 1 to 500."))
    before = query.get("before")
    if before is not None:
        try:
            cursor = parse_before(before)
        except ValueError as exc:
            return _json(scope, 400, invalid_request(f"Query parameter 'before' is invalid: {exc}."))
    if before is None:
        rows = db.fetchall(db.page_sql, (organization, limit + 1))
    else:
        rows = db.fetchall(db.before_sql, (organization, db.time_param(cursor), limit + 1))
    body = {"object": "list", "data": [db.row_json(row) for row in rows[:limit]]}
    if len(rows) > limit:
        body["nextCursor"] = db.cursor_json(rows[limit - 1])
    return _json(scope, 200, body)


async def get_session(request) -> Response:
    scope = request.scope
    try:
        organization = _organization(request)
    except _Denied as denied:
        return _json(scope, denied.status, denied.body, denied.headers)
    session_id = request.path_params["session_id"]
    if not UUID_PATTERN.fullmatch(session_id):
        return _json(scope, 400, invalid_request("Path parameter 'sessionId' must be a UUID."))
    rows = db.fetchall(db.one_sql, (db.uuid_param(uuid.UUID(session_id)), organization))
    if not rows:
        return _json(scope, 404, NOT_FOUND)
    return _json(scope, 200, db.row_json(rows[0]))


app = Starlette(
    routes=[
        Route("/api/v1/sessions", list_sessions),
        Route("/api/v1/sessions/{session_id}", get_session),
    ]
)
