"""The contract as its consumers fetch it: `{base}/openapi.yaml`, `{base}/openapi.json`, and the
Swagger UI at `{base}/ui/` that renders it (swagger-ui-bundle's files). None of them needs an
API key.

Connexion's own `{base}/openapi.json` inlines every `$ref`, which leaves code generators with
anonymous, badly named models, so `create_app` leaves out Connexion's Swagger UI middleware (which serves it) and this
middleware serves the file itself: the YAML byte for byte, the JSON as the same document. Both are built
once at startup. Only the `servers` block can differ: behind a proxy that mounts the app under a
path prefix (ASGI `root_path`), the relative server URL gets that prefix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import yaml
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from sessions_api.web.observe import answered_by

JSON_PATH = "/openapi.json"
YAML_PATH = "/openapi.yaml"
UI_PATH = "/ui"
YAML_MEDIA_TYPE = "application/yaml"


class _StringTimestamps(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader (libyaml's where PyYAML has it: 10x faster on the contract), except
    that unquoted dates stay strings, as JSON has no date type."""


_StringTimestamps.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_StringTimestamps)


def base_path_of(document: dict) -> str:
    """The path of the first server URL (`/api/v1`), where the API and these documents live."""
    url = document["servers"][0]["url"]
    path = url.split("://", 1)[1].split("/", 1)[1] if "://" in url else url.lstrip("/")
    return "/" + path.strip("/")


class SpecDocuments:
    """The served bytes of one spec file, per path prefix."""

    def __init__(self, spec_path: Path) -> None:
        self._yaml = spec_path.read_bytes()
        self.document = load_spec(spec_path)
        self.base_path = base_path_of(self.document)
        self._by_prefix: dict[str, tuple[bytes, bytes]] = {"": (self._yaml, _json_bytes(self.document))}

    def yaml_bytes(self, prefix: str = "") -> bytes:
        return self._for_prefix(prefix)[0]

    def json_bytes(self, prefix: str = "") -> bytes:
        return self._for_prefix(prefix)[1]

    def _for_prefix(self, prefix: str) -> tuple[bytes, bytes]:
        prefix = prefix.rstrip("/")
        cached = self._by_prefix.get(prefix)
        if cached is None:
            document = {
                **self.document,
                "servers": [
                    {**server, "url": prefix + server["url"]} if server["url"].startswith("/") else server
                    for server in self.document["servers"]
                ],
            }
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
            cached = (text.encode("utf-8"), _json_bytes(document))
            if len(self._by_prefix) < 16:  # prefixes come from the deployment, but stay bounded
                self._by_prefix[prefix] = cached
        return cached


def _json_bytes(document: dict) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


class SwaggerUI:
    """Swagger UI's page, its configuration and its files (from swagger-ui-bundle)."""

    # The files the page loads, and what they are.
    ASSETS = {
        "swagger-ui.css": "text/css",
        "index.css": "text/css",
        "swagger-ui-bundle.js": "text/javascript",
        "swagger-ui-standalone-preset.js": "text/javascript",
        "favicon-32x32.png": "image/png",
        "favicon-16x16.png": "image/png",
    }

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = orjson.dumps(config)
        self._assets: dict[str, bytes] = {}

    def page(self) -> bytes:
        return _SWAGGER_PAGE.encode()

    def initializer(self, spec_url: str) -> bytes:
        """The script that starts Swagger UI on the contract: a file, not inline, so that the
        page's Content-Security-Policy allows scripts from this server only."""
        return _SWAGGER_INITIALIZER.replace("{spec_url}", json.dumps(spec_url)).encode()

    def asset(self, name: str) -> bytes:
        if name not in self._assets:  # read on first use, kept: they do not change
            self._assets[name] = (Path(str(swagger_ui_path)) / name).read_bytes()
        return self._assets[name]


_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Sessions API: Swagger UI</title>
    <link rel="stylesheet" type="text/css" href="./swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./index.css" />
    <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32" />
    <link rel="icon" type="image/png" href="./favicon-16x16.png" sizes="16x16" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="./swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""
_SWAGGER_INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: {spec_url},
    configUrl: "./swagger-ui-config.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
"""
# Every document and page: nothing but this server's own scripts, styles (Swagger UI sets
# inline style attributes), images and requests; never inside another site's frame; never
# sniffed as another type.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
]


class SpecDocumentsMiddleware:
    """Answers GET and HEAD of `{base}/openapi.yaml`, `{base}/openapi.json` and the Swagger UI
    under `{base}/ui/`; passes the rest on.

    It sits inside Connexion's exception middleware (a wrong method gets the error envelope)
    and before its security middleware (no API key needed)."""

    def __init__(self, app: ASGIApp, documents: SpecDocuments, swagger_ui: SwaggerUI) -> None:
        self.app = app
        self.documents = documents
        self.swagger_ui = swagger_ui
        self._documents = {
            documents.base_path + JSON_PATH: ("json", "application/json"),
            documents.base_path + YAML_PATH: ("yaml", YAML_MEDIA_TYPE),
        }
        self._ui_path = documents.base_path + UI_PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = app_path(scope) if scope["type"] == "http" else ""
        if path in self._documents:
            answered_by(scope, path.rsplit("/", 1)[-1])
            body, media_type = self._document(path, scope)
        elif path == self._ui_path or path.startswith(self._ui_path + "/"):
            answered_by(scope, "docs")
            if path == self._ui_path:  # the page's relative links need the slash
                self._only_get_or_head(scope)
                location = scope.get("root_path", "") + self._ui_path + "/"
                await RedirectResponse(location, status_code=308)(scope, receive, send)
                return
            body, media_type = self._ui(path[len(self._ui_path) + 1 :], scope)
        else:
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-cache"),
            *_SECURITY_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _document(self, path: str, scope: Scope) -> tuple[bytes, str]:
        self._only_get_or_head(scope)
        kind, media_type = self._documents[path]
        prefix = scope.get("root_path", "")
        body = self.documents.json_bytes(prefix) if kind == "json" else self.documents.yaml_bytes(prefix)
        return body, f"{media_type}; charset=utf-8"

    def _ui(self, name: str, scope: Scope) -> tuple[bytes, str]:
        self._only_get_or_head(scope)
        if name in ("", "index.html"):
            return self.swagger_ui.page(), "text/html; charset=utf-8"
        if name == "swagger-initializer.js":
            spec_url = scope.get("root_path", "") + self.documents.base_path + JSON_PATH
            return self.swagger_ui.initializer(spec_url), "text/javascript; charset=utf-8"
        if name == "swagger-ui-config.json":
            return self.swagger_ui.config, "application/json"
        if name in SwaggerUI.ASSETS:
            return self.swagger_ui.asset(name), SwaggerUI.ASSETS[name]
        raise HTTPException(404)

    @staticmethod
    def _only_get_or_head(scope: Scope) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})


def app_path(scope: Scope) -> str:
    """The request path below the mount point (servers disagree on whether `path` includes it)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path
