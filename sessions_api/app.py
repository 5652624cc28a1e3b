"""The app factory: `uvicorn --factory sessions_api.app:create_app`."""

from __future__ import annotations

from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver

from sessions_api import db, errors, settings as settings_module
from sessions_api.jsonenc import OrjsonJsonifier
from sessions_api.request_context import RequestIdMiddleware
from sessions_api.settings import Settings
from sessions_api.spec_documents import JSON_PATH, UI_PATH, SpecDocuments, SpecDocumentsMiddleware
from sessions_api.validation import ParameterValidator


class TagResolver(Resolver):
    """Operation `listSessions` tagged `Sessions` is `handlers.sessions.listSessions`."""

    def resolve_operation_id(self, operation) -> str:
        tag = operation._operation["tags"][0].lower()  # Connexion keeps the spec here
        return f"handlers.{tag}.{operation.operation_id}"


def create_app(settings: Settings | None = None) -> AsyncApp:
    settings = settings or Settings.from_env()
    settings_module.configure(settings)
    db.configure(settings)
    documents = SpecDocuments(settings.spec_path)
    app = AsyncApp(
        __name__,
        jsonifier=OrjsonJsonifier(),
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
        validator_map={"parameter": ParameterValidator},
    )
    errors.register(app)
    app.add_middleware(SpecDocumentsMiddleware, position=MiddlewarePosition.BEFORE_SWAGGER, documents=documents)
    # Outside the exception handlers, so every answer, errors included, carries the id.
    app.add_middleware(RequestIdMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    return app
