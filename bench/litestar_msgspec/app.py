"""listSessions and getSession in Litestar with msgspec, the way its performance-aware users
write them: `async` handlers, SQLAlchemy Core through `bench.core_sql` (the same statements
and database access as the FastAPI peer: the asyncio engine on PostgreSQL, the driver on
the event loop on SQLite), rows straight into `msgspec.Struct`s, which Litestar encodes with
msgspec; no OpenAPI schema routes, no request logging.

It honours the same contract as the product (checked by `bench.check`).
Run: `uvicorn bench.litestar_msgspec.app:app --no-access-log`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from bench.contract import (
    NOT_FOUND,
    UUID_PATTERN,
    duration_seconds,
    facts_json,
    format_utc,
    invalid_request,
    state_history,
)
from bench.core_sql import ONE, ApiError, Principal, authenticate, bearer_token, db, page_query
from bench.request_id import RequestIdMiddleware


class DeviceOut(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    platform: str
    type: str
    name: str
    os_version: str


class SessionOut(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    organization: uuid.UUID
    user: uuid.UUID
    device: DeviceOut
    created_at: str
    released_at: str | None
    expires_at: str
    name: str | None
    build: str | None
    tags: list[str]
    metadata: dict[str, str]
    result: str | None
    result_reason: str | None
    duration_seconds: float | None
    artifact_count: int
    state_history: list[dict[str, str]]

    @classmethod
    def of(cls, row: Any) -> SessionOut:
        sid, org, user, device, platform, dtype, name, os_version, created, released, expires, *facts, queued = row
        shown = facts_json(*facts)
        return cls(
            id=sid,
            organization=org,
            user=user,
            device=DeviceOut(id=device, platform=platform, type=dtype, name=name, os_version=os_version),
            created_at=format_utc(created),
            released_at=format_utc(released) if released is not None else None,
            expires_at=format_utc(expires),
            name=shown["name"],
            build=shown["build"],
            tags=shown["tags"],
            metadata=shown["metadata"],
            result=shown["result"],
            result_reason=shown["resultReason"],
            duration_seconds=duration_seconds(created, released),
            artifact_count=shown["artifactCount"],
            state_history=state_history(
                format_utc(created),
                format_utc(released) if released is not None else None,
                format_utc(expires),
                format_utc(queued) if queued is not None else None,
            ),
        )


class SessionList(msgspec.Struct, rename="camel"):
    object: str
    data: list[SessionOut]
    next_cursor: str | msgspec.UnsetType = msgspec.UNSET


async def principal(
    authorization: Annotated[str | None, Parameter(header="Authorization")] = None,
    x_organization_id: Annotated[str | None, Parameter(header="X-Organization-Id")] = None,
) -> Principal:
    return await authenticate(bearer_token(authorization), x_organization_id)


@get("/api/v1/sessions", dependencies={"principal": Provide(principal)})
async def list_sessions(
    principal: Principal,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    before: str | None = None,
) -> SessionList:
    statement, values = page_query(principal.organization_id, limit, before)
    rows = await db.all(statement, values)
    page = SessionList(object="list", data=[SessionOut.of(row) for row in rows[:limit]])
    if len(rows) > limit:
        page.next_cursor = format_utc(rows[limit - 1].created_at)
    return page


@get("/api/v1/sessions/{session_id:str}", dependencies={"principal": Provide(principal)})
async def get_session(session_id: str, principal: Principal) -> SessionOut:
    if UUID_PATTERN.fullmatch(session_id) is None:
        raise ApiError(400, invalid_request("Path parameter 'session_id' is not a UUID."))
    values = {"session_id": uuid.UUID(session_id), "organization_id": principal.organization_id}
    rows = await db.all(ONE, values)
    if not rows:
        raise ApiError(404, NOT_FOUND)
    return SessionOut.of(rows[0])


def _api_error(_request: Request, exc: ApiError) -> Response:
    return Response(
        msgspec.json.encode(exc.body), status_code=exc.status, headers=exc.headers, media_type="application/json"
    )


def _validation_error(_request: Request, exc: ValidationException) -> Response:
    return Response(
        msgspec.json.encode(invalid_request(f"The request is invalid: {exc.detail}.")),
        status_code=400,
        media_type="application/json",
    )


app = Litestar(
    route_handlers=[list_sessions, get_session],
    middleware=[RequestIdMiddleware],
    exception_handlers={ApiError: _api_error, ValidationException: _validation_error},
    openapi_config=None,
    debug=False,
)
