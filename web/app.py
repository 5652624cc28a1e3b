"""The app factory: `uvicorn --factory sessions_api.web.app:create_app`.

A request's path through the app (outermost first):

1. `ObserveMiddleware`: request id, access log, metrics; binds the app's state and database.
2. Connexion's exception handling (`web.errors`: every failure in the envelope).
3. `SpecDocumentsMiddleware`, `ProbesMiddleware`, `BodyLimitMiddleware`: answered before routing.
4. Connexion's routing: the operation, as a handler path in the scope.
5. `RequestParseMiddleware`: the query and headers read once; a header sent twice refused.
6. Connexion's security, with our handler (`web.security`): key, organization, role, budgets.
7. `Dispatcher`: parameters and body validated by the operation's row of the table, then the handler.
"""

from __future__ import annotations

import copy

from connexion import ConnexionMiddleware
from connexion.middleware import MiddlewarePosition
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.resolver import Resolver

from sessions_api.core import logs, resources
from sessions_api.core.concurrency import ConcurrencyCap
from sessions_api.core.db import Database
from sessions_api.core.heavy_reads import TooManyHeavyReads
from sessions_api.core.settings import Settings
from sessions_api.web import errors, security
from sessions_api.web.body_limit import BodyLimitMiddleware
from sessions_api.web.dispatch import Dispatcher, RequestParseMiddleware
from sessions_api.web.documents import SpecDocuments, SpecDocumentsMiddleware, SwaggerUI
from sessions_api.web.jsonifier import OrjsonJsonifier
from sessions_api.web.lifespan import lifespan
from sessions_api.web.observe import ObserveMiddleware
from sessions_api.web.operations import Operations
from sessions_api.web.probes import ProbesMiddleware
from sessions_api.web.rate_limits import RateLimits
from sessions_api.web.state import AppState

# Connexion's middlewares we do not use: its Swagger UI (SpecDocumentsMiddleware serves the
# file as it is; Connexion's copy has every $ref inlined), its request validation (the table's
# compiled rules validate what the handler gets: a second parser would read requests its own
# way) and its context (handlers get their arguments from the Dispatcher).
_REPLACED = (SwaggerUIMiddleware, RequestValidationMiddleware, ContextMiddleware)


class SessionsApi(ConnexionMiddleware):
    """The app, with what it owns (`state`: settings, database, table of operations, limits)."""

    state: AppState


def create_app(settings: Settings | None = None) -> SessionsApi:
    settings = settings or Settings.from_env()
    logs.lean_records()  # here: a worker of `serve --workers N` runs the factory, not serve
    documents = SpecDocuments(resources.spec_path())
    import_handler = Resolver().resolve_function_from_operation_id
    operations = Operations(documents.document, documents.base_path, import_handler, settings.max_json_depth)
    state = AppState(
        settings=settings,
        database=Database(settings),
        operations=operations,
        rate_limits=RateLimits(settings),
        heavy_reads=ConcurrencyCap(settings.max_heavy_reads_per_organization, TooManyHeavyReads),
    )
    unused = {*_REPLACED, *(() if settings.validate_responses else (ResponseValidationMiddleware,))}
    app = SessionsApi(
        Dispatcher(state),
        middlewares=[middleware for middleware in ConnexionMiddleware.default_middlewares if middleware not in unused],
        jsonifier=OrjsonJsonifier(),
        lifespan=lifespan(state),
        security_map={security.BEARER: security.BearerKeys},
    )
    # Connexion routes (and, in tests, validates responses) from its own copy of the spec.
    app.add_api(
        copy.deepcopy(documents.document),
        resolver=_HandlerPaths(operations),
        validate_responses=settings.validate_responses,
        jsonifier=OrjsonJsonifier(),
    )
    errors.register(app, operations.allowed_at)
    app.add_middleware(ObserveMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, state=state)
    # Inside the exception handling (refusals are the envelope), before anything reads a body.
    app.add_middleware(
        BodyLimitMiddleware,
        position=MiddlewarePosition.BEFORE_ROUTING,
        max_body_bytes=settings.max_body_bytes,
        streamed_prefixes=operations.streamed_path_prefixes(),
        max_streamed_bytes=settings.max_artifact_bytes,
    )
    serve_metrics = settings.metrics and settings.metrics_address() is None
    app.add_middleware(ProbesMiddleware, position=MiddlewarePosition.BEFORE_ROUTING, serve_metrics=serve_metrics)
    swagger_ui = SwaggerUI({"displayOperationId": True, "docExpansion": "list"})
    app.add_middleware(
        SpecDocumentsMiddleware, position=MiddlewarePosition.BEFORE_ROUTING, documents=documents, swagger_ui=swagger_ui
    )
    app.add_middleware(RequestParseMiddleware, position=MiddlewarePosition.BEFORE_SECURITY, state=state)
    app.state = state
    return app


class _HandlerPaths(Resolver):
    """Connexion's routing names each operation by its handler path, the table's key."""

    def __init__(self, operations: Operations) -> None:
        super().__init__()
        self.operations = operations

    def resolve_operation_id(self, operation) -> str:
        return self.operations.handler_path_for(operation.operation_id)
