"""listSessions and getSession in FastAPI, the way a user who cares about speed writes them:
SQLAlchemy Core (no ORM objects), one joined query per request beside the key lookup (key,
user and membership in one statement), rows straight into Pydantic response models, which
FastAPI serializes to JSON bytes in Pydantic's Rust core (its fastest path today: it
deprecates `ORJSONResponse` in favour of it; errors use orjson). Endpoints are `async def`:
on PostgreSQL the queries go through SQLAlchemy's asyncio engine on psycopg 3 (no thread
hand-off); on SQLite they run on the
event loop, as the floor does (short indexed reads in WAL mode do not wait), which is the
fastest a FastAPI user can make SQLite serve.

It honours the same contract as the product (checked by `bench.check`): the same key format
and hash check, the same organization selection and 403s, the same page query (newest first,
`before` strictly before, `limit + 1` rows to decide `nextCursor`) and the same JSON. It
reads the tables the product created; `DATABASE_URL` names the database.

Run: `uvicorn bench.fastapi_core.app:app` (uvicorn's defaults, access log included).
"""

from __future__ import annotations

import hmac
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, PlainSerializer
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
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
    NOT_FOUND,
    UNAUTHENTICATED,
    format_utc,
    invalid_request,
    parse_before,
    secret_hash,
)
from bench.request_id import RequestIdMiddleware

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
sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("organization_id", Uuid),
    Column("user_id", Uuid),
    Column("device_id", Uuid),
    Column("created_at", DateTime(timezone=True)),
    Column("released_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
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


db = Database(DATABASE_URL)

# --- the response models ------------------------------------------------------------------

Timestamp = Annotated[datetime, PlainSerializer(format_utc, return_type=str)]


class DeviceOut(BaseModel):
    id: uuid.UUID
    platform: str
    type: str
    name: str
    osVersion: str


class SessionOut(BaseModel):
    id: uuid.UUID
    organization: uuid.UUID
    user: uuid.UUID
    device: DeviceOut
    createdAt: Timestamp
    releasedAt: Timestamp | None
    expiresAt: Timestamp

    @classmethod
    def of(cls, row: Any) -> SessionOut:
        sid, org, user, device, platform, dtype, name, os_version, created, released, expires = row
        return cls(
            id=sid,
            organization=org,
            user=user,
            device=DeviceOut(id=device, platform=platform, type=dtype, name=name, osVersion=os_version),
            createdAt=created,
            releasedAt=released,
            expiresAt=expires,
        )


class SessionList(BaseModel):
    object: Literal["list"]
    data: list[SessionOut]
    nextCursor: Timestamp | None = None


# --- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers


app = FastAPI(title="Sessions API (performance-aware FastAPI)")
app.add_middleware(RequestIdMiddleware)


@app.exception_handler(ApiError)
async def _api_error(_request: Request, exc: ApiError) -> Response:
    return _json(exc.body, exc.status, exc.headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return _json(invalid_request(f"Parameter {where} is invalid: {first['msg']}."), 400)


def _json(body: dict, status: int, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


# --- the caller -----------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    organization_id: uuid.UUID


def _unauthenticated() -> ApiError:
    return ApiError(401, UNAUTHENTICATED, {"WWW-Authenticate": "Bearer"})


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_organization_id: Annotated[str | None, Header()] = None,
) -> Principal:
    match = KEY_FORMAT.fullmatch(credentials.credentials) if credentials is not None else None
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
    return Principal(user_id=key.user_id, organization_id=key.selected)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


# --- the operations -----------------------------------------------------------------------


@app.get("/api/v1/sessions", response_model=SessionList, response_model_exclude_unset=True)
async def list_sessions(
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: str | None = None,
):
    values: dict[str, Any] = {"organization_id": principal.organization_id, "limit": limit + 1}
    statement = PAGE
    if before is not None:
        try:
            values["before"] = parse_before(before)
        except ValueError as exc:
            raise ApiError(400, invalid_request(f"Query parameter 'before' is invalid: {exc}.")) from None
        statement = PAGE_BEFORE
    rows = await db.all(statement, values)
    page = SessionList(object="list", data=[SessionOut.of(row) for row in rows[:limit]])
    if len(rows) > limit:
        page.nextCursor = rows[limit - 1].created_at
    return page


@app.get("/api/v1/sessions/{session_id}", response_model=SessionOut)
async def get_session(session_id: uuid.UUID, principal: CurrentPrincipal):
    rows = await db.all(ONE, {"session_id": session_id, "organization_id": principal.organization_id})
    if not rows:
        raise ApiError(404, NOT_FOUND)
    return SessionOut.of(rows[0])
