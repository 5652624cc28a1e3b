"""The app factory: `uvicorn --factory sessions_api.web.app:create_app`."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable

from connexion import ConnexionMiddleware
from connexion.middleware import MiddlewarePosition
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware

from sessions_api.core import db, logs, resources
from sessions_api.core import settings as settings_module
from sessions_api.core.settings import Settings
from sessions_api.web import errors, security
from sessions_api.web.body_limit import BodyLimitMiddleware
from sessions_api.web.dispatch import Dispatcher
from sessions_api.web.documents import SpecDocuments, SpecDocumentsMiddleware, SwaggerUI
from sessions_api.web.jsonifier import OrjsonJsonifier
from sessions_api.web.lifespan import lifespan
from sessions_api.web.observe import ObserveMiddleware, Route
from sessions_api.web.probes import ProbesMiddleware
from sessions_api.web.rate_limits import RateLimits
from sessions_api.web.routing import METHODS, TagResolver
from sessions_api.web.validation import VALIDATORS


def create_app(settings: Settings | None = None) -> ConnexionMiddleware:
    settings = settings or Settings.from_env()
    logs.lean_records()  # here: a worker of `serve --workers N` runs the factory, not serve
    documents = SpecDocuments(resources.spec_path())
    resolver = TagResolver(documents.document)
    rules = security.Rules(
        access=security.AccessRules(documents.document, resolver.handler_path),
        rate_limits=RateLimits(settings),
        session_starts=frozenset({resolver.handler_path("createSession")}),
    )

    def make_current() -> None:
        settings_module.configure(settings)
        db.configure(settings)
        security.configure(rules)

    make_current()
    # Connexion routes, authenticates and validates (and, in tests, validates responses);
    # `Dispatcher` calls the handlers. Its Swagger UI is not used: SpecDocumentsMiddleware
    # serves the page with the file as it is (Connexion's copy has every $ref inlined).
    unused = {SwaggerUIMiddleware, ContextMiddleware}
    if not settings.validate_responses:
        unused.add(ResponseValidationMiddleware)
    app = ConnexionMiddleware(
        Dispatcher(documents.document, resolver.handler_path, resolver.function),
        middlewares=[middleware for middleware in ConnexionMiddleware.default_middlewares if middleware not in unused],
        jsonifier=OrjsonJsonifier(),
        lifespan=lifespan,
        security_map={security.BEARER: security.BearerKeys},
    )
    app.add_api(
        copy.deepcopy(documents.document),
        resolver=resolver,
        strict_validation=True,
        validate_responses=settings.validate_responses,
        jsonifier=OrjsonJsonifier(),
        validator_map=VALIDATORS,
    )
    errors.register(app, errors.AllowedMethods(documents.document, base_path=documents.base_path))
    # Outermost of ours (Connexion's exception handling is inside it): every answer, errors
    # included, carries the request id and the RateLimit headers, and is logged and counted.
    app.add_middleware(
        ObserveMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        routes=_routes(documents, resolver),
        metrics=settings.metrics,
    )
    # Inside the exception handling (refusals are the envelope), before anything reads a body.
    app.add_middleware(
        BodyLimitMiddleware, position=MiddlewarePosition.BEFORE_ROUTING, max_body_bytes=settings.max_body_bytes
    )
    serve_metrics = settings.metrics and settings.metrics_address() is None
    app.add_middleware(ProbesMiddleware, position=MiddlewarePosition.BEFORE_ROUTING, serve_metrics=serve_metrics)
    swagger_ui = SwaggerUI({"displayOperationId": True, "docExpansion": "list"})
    app.add_middleware(
        SpecDocumentsMiddleware, position=MiddlewarePosition.BEFORE_ROUTING, documents=documents, swagger_ui=swagger_ui
    )
    _make_current[app] = make_current
    return app


# What each app made sets up in its process (settings, engine, security rules), to do again.
_make_current: weakref.WeakKeyDictionary[ConnexionMiddleware, Callable[[], None]] = weakref.WeakKeyDictionary()


def make_current(app: ConnexionMiddleware) -> None:
    """Make `app` the one this process serves again: its settings, a new engine (the old one's
    connections closed) and its security rules. A server makes one app; a process that made
    others since (a test suite) calls this to serve an earlier one."""
    _make_current[app]()


def _routes(documents: SpecDocuments, resolver: TagResolver) -> dict[str, Route]:
    """Each handler path Connexion routes to -> its operationId and path template."""
    return {
        resolver.handler_path(operation["operationId"]): Route(operation["operationId"], documents.base_path + path)
        for path, item in documents.document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }
