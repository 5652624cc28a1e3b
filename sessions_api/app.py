"""The app factory: `uvicorn --factory sessions_api.app:create_app`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from starlette.concurrency import run_in_threadpool

from models import Role, leases
from sessions_api import auth, db, errors, settings as settings_module
from sessions_api.jsonenc import OrjsonJsonifier
from sessions_api.request_context import RequestIdMiddleware
from sessions_api.settings import Settings
from sessions_api.spec_documents import JSON_PATH, UI_PATH, SpecDocuments, SpecDocumentsMiddleware
from sessions_api.validation import VALIDATORS

logger = logging.getLogger(__name__)


def handler_path(operation: dict) -> str:
    """Operation `listSessions` tagged `Sessions` is `handlers.sessions.listSessions`."""
    return f"handlers.{operation['tags'][0].lower()}.{operation['operationId']}"


class TagResolver(Resolver):
    def resolve_operation_id(self, operation) -> str:
        return handler_path(operation._operation)  # Connexion keeps the spec's operation here


def _required_roles(spec: dict) -> dict[str, frozenset[Role]]:
    return {
        handler_path(operation): frozenset(Role(role) for role in operation["x-required-roles"])
        for item in spec["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "x-required-roles" in operation
    }


@asynccontextmanager
async def _lifespan(_app) -> AsyncIterator[None]:
    """Sizes the threads that run database calls, and releases expired sessions every few
    seconds, whether or not anyone calls the API."""
    settings = settings_module.current()
    # Connexion runs sync handlers, and auth.py its lookup, on anyio's default thread limiter.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.database_threads()
    sweeper = asyncio.create_task(_sweep_expired_sessions(settings.expiry_sweep_seconds))
    try:
        yield
    finally:
        sweeper.cancel()


async def _sweep_expired_sessions(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            released = await run_in_threadpool(leases.release_expired)
            if released:
                logger.info("released %d expired session(s)", released)
        except Exception:  # the database may be away: try again next time
            logger.warning("could not release expired sessions", exc_info=True)


def create_app(settings: Settings | None = None) -> AsyncApp:
    settings = settings or Settings.from_env()
    settings_module.configure(settings)
    db.configure(settings)
    documents = SpecDocuments(settings.spec_path)
    auth.require_roles(_required_roles(documents.document))
    app = AsyncApp(
        __name__,
        jsonifier=OrjsonJsonifier(),
        lifespan=_lifespan,
        # Swagger UI renders the file as served by SpecDocumentsMiddleware, not Connexion's copy
        # with every $ref inlined.
        swagger_ui_options=SwaggerUIOptions(
            serve_spec=False, spec_path=JSON_PATH, swagger_ui_path=UI_PATH,
            swagger_ui_config={"displayOperationId": True, "docExpansion": "list"},
        ),
    )
    app.add_api(
        settings.spec_path,
        resolver=TagResolver(),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        jsonifier=OrjsonJsonifier(),
        validator_map=VALIDATORS,
    )
    errors.register(app, errors.AllowedMethods(documents.document, base_path=documents.base_path))
    app.add_middleware(SpecDocumentsMiddleware, position=MiddlewarePosition.BEFORE_SWAGGER, documents=documents)
    # Outside the exception handlers, so every answer, errors included, carries the id.
    app.add_middleware(RequestIdMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    return app
