"""listSessions and getSession in FastAPI, the way a user who cares about speed writes them:
SQLAlchemy Core (no ORM objects), one joined query per request beside the key lookup (key,
user and membership in one statement), rows straight into Pydantic response models, which
FastAPI serializes to JSON bytes in Pydantic's Rust core (its fastest path today: it
deprecates `ORJSONResponse` in favour of it; errors use orjson). Endpoints are `async def`;
the tables, the statements and the database access are `bench.core_sql`'s, shared with the
Litestar peer.

It honours the same contract as the product (checked by `bench.check`): the same key format
and hash check, the same organization selection and 403s, the same page query (newest first,
`before` strictly before, `limit + 1` rows to decide `nextCursor`) and the same JSON. It
reads the tables the product created; `DATABASE_URL` names the database.

Run: `uvicorn bench.fastapi_core.app:app` (uvicorn's defaults, access log included).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, PlainSerializer

from bench import core_writes
from bench.contract import NOT_FOUND, duration_seconds, facts_json, format_utc, invalid_request, state_history
from bench.core_sql import ONE, ApiError, Principal, authenticate, db, page_query
from bench.request_id import RequestIdMiddleware

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
    def of(cls, row: Any) -> SessionOut:
        sid, org, user, device, platform, dtype, name, os_version, created, released, expires, *facts, queued = row
        return cls(
            id=sid,
            organization=org,
            user=user,
            device=DeviceOut(id=device, platform=platform, type=dtype, name=name, osVersion=os_version),
            createdAt=created,
            releasedAt=released,
            expiresAt=expires,
            **facts_json(*facts),
            durationSeconds=duration_seconds(created, released),
            stateHistory=state_history(
                format_utc(created),
                format_utc(released) if released is not None else None,
                format_utc(expires),
                format_utc(queued) if queued is not None else None,
            ),
        )


class SessionList(BaseModel):
    object: Literal["list"]
    data: list[SessionOut]
    nextCursor: Timestamp | None = None


# --- errors ---------------------------------------------------------------------------------


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


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_organization_id: Annotated[str | None, Header()] = None,
) -> Principal:
    token = credentials.credentials if credentials is not None else None
    return await authenticate(token, x_organization_id)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


# --- the operations -----------------------------------------------------------------------


@app.get("/api/v1/sessions", response_model=SessionList, response_model_exclude_unset=True)
async def list_sessions(
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: str | None = None,
):
    statement, values = page_query(principal.organization_id, limit, before)
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


# --- the writes (bench.core_writes): measured by `python -m bench.writes` -------------------


class StartBody(BaseModel):
    platform: Literal["ios", "android"]
    maxDurationMinutes: Annotated[int, Field(ge=1, le=1440)] | None = None


@app.post("/api/v1/sessions", status_code=201)
async def create_session(
    body: StartBody,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> Response:
    started = await core_writes.start_session(principal, body.model_dump(exclude_none=True), idempotency_key)
    headers = {"Location": f"/api/v1/sessions/{started['id']}"}
    if isinstance(started, core_writes.Replayed):
        headers["Idempotent-Replayed"] = "true"
    return _json(started, 201, headers)


@app.post("/api/v1/sessions/{session_id}/release")
async def release_session(session_id: uuid.UUID, principal: CurrentPrincipal) -> Response:
    return _json(await core_writes.release_session(principal, session_id), 200)
