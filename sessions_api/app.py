"""The app factory: `uvicorn --factory sessions_api.app:create_app`."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import yaml
from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver

from starlette.concurrency import run_in_threadpool

from models import Role, leases
from sessions_api import auth, db, errors, settings as settings_module
from sessions_api.jsonenc import OrjsonJsonifier
from sessions_api.request_context import RequestIdMiddleware
from sessions_api.settings import Settings
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
    """Releases expired sessions every few seconds, whether or not anyone calls the API."""
    sweeper = asyncio.create_task(_sweep_expired_sessions(settings_module.current().expiry_sweep_seconds))
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
    spec = yaml.safe_load(settings.spec_path.read_text())
    auth.require_roles(_required_roles(spec))
    app = AsyncApp(__name__, jsonifier=OrjsonJsonifier(), lifespan=_lifespan)
    app.add_api(
        settings.spec_path,
        resolver=TagResolver(),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        jsonifier=OrjsonJsonifier(),
        validator_map=VALIDATORS,
    )
    errors.register(app, errors.AllowedMethods(spec, base_path=urlparse(spec["servers"][0]["url"]).path))
    # Outside the exception handlers, so every answer, errors included, carries the id.
    app.add_middleware(RequestIdMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    return app
