"""The app factory: `uvicorn --factory sessions_api.web.app:create_app`."""

from __future__ import annotations

import copy

from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions

from sessions_api.core import db, resources
from sessions_api.core import settings as settings_module
from sessions_api.core.settings import Settings
from sessions_api.web import errors, security
from sessions_api.web.documents import (
    JSON_PATH,
    UI_PATH,
    SpecDocuments,
    SpecDocumentsMiddleware,
)
from sessions_api.web.jsonifier import OrjsonJsonifier
from sessions_api.web.lifespan import lifespan
from sessions_api.web.request_id import RequestIdMiddleware
from sessions_api.web.routing import TagResolver
from sessions_api.web.validation import VALIDATORS


def create_app(settings: Settings | None = None) -> AsyncApp:
    settings = settings or Settings.from_env()
    settings_module.configure(settings)
    db.configure(settings)
    documents = SpecDocuments(resources.spec_path())
    resolver = TagResolver(documents.document)
    security.set_access_rules(security.AccessRules(documents.document, resolver.handler_path))
    app = AsyncApp(
        __name__,
        jsonifier=OrjsonJsonifier(),
        lifespan=lifespan,
        # Swagger UI renders the file as served by SpecDocumentsMiddleware, not Connexion's copy
        # with every $ref inlined.
        swagger_ui_options=SwaggerUIOptions(
            serve_spec=False,
            spec_path=JSON_PATH,
            swagger_ui_path=UI_PATH,
            swagger_ui_config={"displayOperationId": True, "docExpansion": "list"},
        ),
    )
    app.add_api(
        _routed_spec(documents.document),
        resolver=resolver,
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


def _routed_spec(document: dict) -> dict:
    """The spec as Connexion routes it: the contract, plus the Python function behind its bearer
    scheme, which the published contract does not name."""
    routed = copy.deepcopy(document)
    scheme = routed["components"]["securitySchemes"][security.SCHEME]
    scheme["x-bearerInfoFunc"] = f"{security.authenticate.__module__}.{security.authenticate.__qualname__}"
    return routed
