"""What the two performance-aware peers (FastAPI and Litestar) share: the product's tables as
SQLAlchemy Core tables, the statements built once, the database access from `async def`
endpoints, and the caller's resolution from the key and `X-Organization-Id`.

On PostgreSQL the queries go through SQLAlchemy's asyncio engine on psycopg 3 (no thread
hand-off); on SQLite they run on the event loop, as the floor does (short indexed reads in
WAL mode do not wait), which is the fastest a user of either framework can make SQLite serve.
`DATABASE_URL` names the database.
"""

from __future__ import annotations

import hmac
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import create_async_engine

from bench.contract import (
    FORBIDDEN,
    KEY_FORMAT,
    LAST_USED_INTERVAL,
    UNAUTHENTICATED,
    invalid_request,
    parse_before,
    secret_hash,
)

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///./sessions.db")
SQLITE = DATABASE_URL.startswith("sqlite")

# --- the tables (as the product created them), as Core tables -----------------------------

metadata = MetaData()
users = Table("users", metadata, Column("id", Uuid, primary_key=True), Column("default_organization_id", Uuid))
memberships = Table(
    "memberships",
    metadata,
    Column("organization_id", Uuid, primary_key=True),
    Column("user_id", Uuid, primary_key=True),
    Column("role", String),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("lookup_id", String),
    Column("secret_hash", String),
    Column("user_id", Uuid),
    Column("organization_id", Uuid),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)
devices = Table(
    "devices",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("platform", String),
    Column("type", String),
    Column("name", String),
    Column("os_version", String),
    Column("disabled", Boolean),
)
session_requests = Table(
    "session_requests",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("session_id", Uuid),
    Column("created_at", DateTime(timezone=True)),
)
sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("organization_id", Uuid),
    Column("user_id", Uuid),
    Column("device_id", Uuid),
    Column("platform", String),
    Column("created_at", DateTime(timezone=True)),
    Column("released_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("name", String),
    Column("build", String),
    Column("tags", String),
    Column("metadata_json", String),
    Column("result", String),
    Column("result_reason", String),
    Column("artifact_count", Integer),
)

# The key, its user and the user's role in the selected organization, in one statement.
_SELECTED = func.coalesce(
    bindparam("requested", type_=Uuid()), api_keys.c.organization_id, users.c.default_organization_id
)
KEY_LOOKUP = (
    select(
        api_keys.c.id,
        api_keys.c.secret_hash,
        api_keys.c.user_id,
        api_keys.c.organization_id,
        api_keys.c.revoked_at,
        api_keys.c.last_used_at,
        _SELECTED.label("selected"),
        memberships.c.role,
    )
    .join(users, users.c.id == api_keys.c.user_id)
    .outerjoin(
        memberships, and_(memberships.c.user_id == api_keys.c.user_id, memberships.c.organization_id == _SELECTED)
    )
    .where(api_keys.c.lookup_id == bindparam("lookup_id"))
)
SESSION_COLUMNS = select(
    sessions.c.id,
    sessions.c.organization_id,
    sessions.c.user_id,
    sessions.c.device_id,
    devices.c.platform,
    devices.c.type,
    devices.c.name,
    devices.c.os_version,
    sessions.c.created_at,
    sessions.c.released_at,
    sessions.c.expires_at,
    sessions.c.name.label("session_name"),
    sessions.c.build,
    sessions.c.tags,
    sessions.c.metadata_json,
    sessions.c.result,
    sessions.c.result_reason,
    sessions.c.artifact_count,
    select(session_requests.c.created_at)
    .where(session_requests.c.session_id == sessions.c.id)
    .limit(1)
    .scalar_subquery()
    .label("queued_at"),
).join(devices, devices.c.id == sessions.c.device_id)
PAGE = (
    SESSION_COLUMNS.where(sessions.c.organization_id == bindparam("organization_id"))
    .order_by(sessions.c.created_at.desc())
    .limit(bindparam("limit"))
)
PAGE_BEFORE = PAGE.where(sessions.c.created_at < bindparam("before"))
ONE = SESSION_COLUMNS.where(
    sessions.c.id == bindparam("session_id"), sessions.c.organization_id == bindparam("organization_id")
)
TOUCH = update(api_keys).where(api_keys.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


class Database:
    """Queries from `async def` endpoints: PostgreSQL through the asyncio engine, SQLite inline."""

    def __init__(self, url: str) -> None:
        if SQLITE:
            self.engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=20)

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:
                dbapi_conn.execute("PRAGMA busy_timeout=5000")
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True, pool_size=20)

    async def all(self, statement, values: dict) -> list:
        if SQLITE:
            with self.engine.connect() as conn:
                return conn.execute(statement, values).all()
        async with self.engine.connect() as conn:
            return (await conn.execute(statement, values)).all()

    async def write(self, statement, values: dict) -> None:
        if SQLITE:
            with self.engine.begin() as conn:
                conn.execute(statement, values)
            return
        async with self.engine.begin() as conn:
            await conn.execute(statement, values)

    async def transact(self, work, *args):
        """`work(conn, *args)` in one transaction: inline on SQLite, through the asyncio
        engine's `run_sync` on PostgreSQL (the same code, no thread)."""
        if SQLITE:
            with self.engine.begin() as conn:
                return work(conn, *args)
        async with self.engine.begin() as conn:
            return await conn.run_sync(work, *args)


db = Database(DATABASE_URL)


class ApiError(Exception):
    """An answer in the error envelope; each peer's exception handler renders it."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    # The key it authenticated with (the audit row's actor).
    key_id: uuid.UUID | None = None


def _unauthenticated() -> ApiError:
    return ApiError(401, UNAUTHENTICATED, {"WWW-Authenticate": "Bearer"})


async def authenticate(token: str | None, x_organization_id: str | None) -> Principal:
    """The caller of a request: its key's user, acting on the selected organization."""
    match = KEY_FORMAT.fullmatch(token) if token is not None else None
    if match is None:
        raise _unauthenticated()
    lookup_id, secret = match.groups()
    requested = None
    if x_organization_id is not None:
        try:
            requested = uuid.UUID(x_organization_id)
        except ValueError:
            requested = None
    rows = await db.all(KEY_LOOKUP, {"lookup_id": lookup_id, "requested": requested})
    key = rows[0] if rows else None
    if key is None or not hmac.compare_digest(key.secret_hash, secret_hash(secret)) or key.revoked_at is not None:
        raise _unauthenticated()
    if x_organization_id is not None and (
        requested is None or (key.organization_id is not None and key.organization_id != requested)
    ):
        raise ApiError(403, FORBIDDEN)
    if key.role is None:
        raise ApiError(403, FORBIDDEN)
    now = datetime.now(UTC)
    last_used = key.last_used_at.replace(tzinfo=UTC) if key.last_used_at else None
    if last_used is None or now - last_used >= LAST_USED_INTERVAL:
        await db.write(TOUCH, {"key_id": key.id, "now": now})
    return Principal(user_id=key.user_id, organization_id=key.selected, role=key.role, key_id=key.id)


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header (the scheme in any case)."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.partition(" ")
    return credentials if scheme.lower() == "bearer" and credentials else None


def page_query(organization_id: uuid.UUID, limit: int, before: str | None) -> tuple[Any, dict[str, Any]]:
    """The page statement and its values: `limit + 1` rows, to decide `nextCursor`."""
    values: dict[str, Any] = {"organization_id": organization_id, "limit": limit + 1}
    if before is None:
        return PAGE, values
    try:
        cursor = parse_before(before)
    except ValueError as exc:
        raise ApiError(400, invalid_request(f"Query parameter 'before' is invalid: {exc}.")) from None
    return PAGE_BEFORE, {**values, "before": cursor}
