"""listSessions and getSession in FastAPI + SQLModel, written the way a competent FastAPI
user writes them: SQLModel table classes, a `Session` dependency, an auth dependency that
loads the key, the user and the membership as ORM objects, and Pydantic response models.

It honours the same contract as the product (checked by `bench.check`): the same key format
and hash check, the same organization selection and 403s, the same page query (newest
first, `before` strictly before, `limit + 1` rows to decide `nextCursor`) and the same JSON.
It reads the tables the product created; `DATABASE_URL` names the database.

Run: `uvicorn bench.reference.app:app` (uvicorn's defaults, access log included).
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, PlainSerializer
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, create_engine, select

from bench.contract import (
    FORBIDDEN,
    KEY_FORMAT,
    LAST_USED_INTERVAL,
    NOT_FOUND,
    UNAUTHENTICATED,
    duration_seconds,
    facts_json,
    format_utc,
    invalid_request,
    parse_before,
    secret_hash,
    state_history,
)
from bench.request_id import RequestIdMiddleware

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///./sessions.db")


def _engine():
    if not DATABASE_URL.startswith("sqlite"):
        return create_engine(DATABASE_URL, pool_pre_ping=True)
    engine = create_engine(DATABASE_URL, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=5000")

    return engine


engine = _engine()


# --- the tables (as the product created them) --------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: uuid.UUID = Field(primary_key=True)
    email: str
    default_organization_id: uuid.UUID


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"
    organization_id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID = Field(primary_key=True)
    role: str


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: uuid.UUID = Field(primary_key=True)
    lookup_id: str
    secret_hash: str
    user_id: uuid.UUID
    organization_id: uuid.UUID | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Device(SQLModel, table=True):
    __tablename__ = "devices"
    id: uuid.UUID = Field(primary_key=True)
    platform: str
    type: str
    name: str
    os_version: str


class SessionRecord(SQLModel, table=True):
    __tablename__ = "sessions"
    id: uuid.UUID = Field(primary_key=True)
    organization_id: uuid.UUID
    user_id: uuid.UUID
    device_id: uuid.UUID = Field(foreign_key="devices.id")
    created_at: datetime
    released_at: datetime | None = None
    expires_at: datetime
    name: str | None = None
    build: str | None = None
    tags: str = "[]"
    metadata_json: str = "{}"
    result: str | None = None
    result_reason: str | None = None
    artifact_count: int = 0


class SessionRequest(SQLModel, table=True):
    __tablename__ = "session_requests"
    id: uuid.UUID = Field(primary_key=True)
    session_id: uuid.UUID | None = None
    created_at: datetime


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
    name: str | None
    build: str | None
    tags: list[str]
    metadata: dict[str, str]
    result: str | None
    resultReason: str | None
    durationSeconds: float | None
    artifactCount: int
    stateHistory: list[dict[str, str]]

    @classmethod
    def of(cls, record: SessionRecord, device: Device, db: Session) -> SessionOut:
        # The session's request, if it waited in the queue: one more query per session.
        queued = db.exec(select(SessionRequest.created_at).where(SessionRequest.session_id == record.id)).first()
        return cls(
            id=record.id,
            organization=record.organization_id,
            user=record.user_id,
            device=DeviceOut(
                id=device.id, platform=device.platform, type=device.type, name=device.name, osVersion=device.os_version
            ),
            createdAt=record.created_at,
            releasedAt=record.released_at,
            expiresAt=record.expires_at,
            **facts_json(
                record.name,
                record.build,
                record.tags,
                record.metadata_json,
                record.result,
                record.result_reason,
                record.artifact_count,
            ),
            durationSeconds=duration_seconds(record.created_at, record.released_at),
            stateHistory=state_history(
                format_utc(record.created_at),
                format_utc(record.released_at) if record.released_at is not None else None,
                format_utc(record.expires_at),
                format_utc(queued) if queued is not None else None,
            ),
        )


class SessionList(BaseModel):
    object: Literal["list"]
    data: list[SessionOut]
    nextCursor: Timestamp | None = None


# --- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers


app = FastAPI(title="Sessions API (FastAPI reference)")
app.add_middleware(RequestIdMiddleware)


@app.exception_handler(ApiError)
async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return JSONResponse(invalid_request(f"Parameter {where} is invalid: {first['msg']}."), status_code=400)


# --- dependencies -------------------------------------------------------------------------


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


DbSession = Annotated[Session, Depends(get_db)]
bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    organization_id: uuid.UUID


def _unauthenticated() -> ApiError:
    return ApiError(401, UNAUTHENTICATED, {"WWW-Authenticate": "Bearer"})


def get_principal(
    db: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_organization_id: Annotated[str | None, Header()] = None,
) -> Principal:
    if credentials is None:
        raise _unauthenticated()
    match = KEY_FORMAT.fullmatch(credentials.credentials)
    if match is None:
        raise _unauthenticated()
    lookup_id, secret = match.groups()
    key = db.exec(select(ApiKey).where(ApiKey.lookup_id == lookup_id)).first()
    if key is None or not hmac.compare_digest(key.secret_hash, secret_hash(secret)) or key.revoked_at is not None:
        raise _unauthenticated()
    if x_organization_id is not None:
        try:
            organization_id = uuid.UUID(x_organization_id)
        except ValueError:
            raise ApiError(403, FORBIDDEN) from None
        if key.organization_id is not None and key.organization_id != organization_id:
            raise ApiError(403, FORBIDDEN)
    elif key.organization_id is not None:
        organization_id = key.organization_id
    else:
        organization_id = db.get(User, key.user_id).default_organization_id
    if db.get(Membership, (organization_id, key.user_id)) is None:
        raise ApiError(403, FORBIDDEN)
    now = datetime.now(UTC)
    last_used = key.last_used_at.replace(tzinfo=UTC) if key.last_used_at else None
    if last_used is None or now - last_used >= LAST_USED_INTERVAL:
        key.last_used_at = now
        db.add(key)
        db.commit()
    return Principal(user_id=key.user_id, organization_id=organization_id)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


# --- the operations -----------------------------------------------------------------------


@app.get("/api/v1/sessions", response_model=SessionList, response_model_exclude_unset=True)
def list_sessions(
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: str | None = None,
):
    statement = (
        select(SessionRecord, Device)
        .join(Device)
        .where(SessionRecord.organization_id == principal.organization_id)
        .order_by(SessionRecord.created_at.desc())
        .limit(limit + 1)
    )
    if before is not None:
        try:
            cursor = parse_before(before)
        except ValueError as exc:
            raise ApiError(400, invalid_request(f"Query parameter 'before' is invalid: {exc}.")) from None
        statement = statement.where(SessionRecord.created_at < cursor)
    rows = db.exec(statement).all()
    page = SessionList(object="list", data=[SessionOut.of(record, device, db) for record, device in rows[:limit]])
    if len(rows) > limit:
        page.nextCursor = rows[limit - 1][0].created_at
    return page


@app.get("/api/v1/sessions/{session_id}", response_model=SessionOut)
def get_session(session_id: uuid.UUID, principal: CurrentPrincipal, db: DbSession):
    row = db.exec(
        select(SessionRecord, Device)
        .join(Device)
        .where(SessionRecord.id == session_id, SessionRecord.organization_id == principal.organization_id)
    ).first()
    if row is None:
        raise ApiError(404, NOT_FOUND)
    return SessionOut.of(*row, db)
