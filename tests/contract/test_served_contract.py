"""The contract as consumers fetch it from a running server: the spec file itself, as YAML and
JSON, and Swagger UI, all without an API key."""

from __future__ import annotations

import json

import pytest
import yaml
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from sessions_api.core.resources import spec_path
from sessions_api.web.documents import load_spec
from tests.support.api import assert_error

NO_KEY: dict[str, str] = {}
BAD_KEY = {"Authorization": "Bearer sapi_not-a-key"}


@pytest.mark.parametrize("headers", [NO_KEY, BAD_KEY], ids=["no key", "bad key"])
def test_the_yaml_is_the_spec_file_byte_for_byte(client, headers):
    response = client.get("/api/v1/openapi.yaml", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/yaml; charset=utf-8"
    assert response.content == spec_path().read_bytes()
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("headers", [NO_KEY, BAD_KEY], ids=["no key", "bad key"])
def test_the_json_is_the_same_document_with_its_refs_kept(client, headers):
    response = client.get("/api/v1/openapi.json", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    document = response.json()
    assert document == load_spec(spec_path()) == yaml.safe_load(spec_path().read_text())
    # Connexion's own copy inlines every $ref; generators need them to name their models.
    session_schema = document["paths"]["/sessions/{sessionId}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    assert session_schema == {"$ref": "#/components/schemas/Session"}
    validate(document)


def test_head_answers_without_a_body_and_other_methods_get_405(client):
    head = client.head("/api/v1/openapi.json")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(client.get("/api/v1/openapi.json").content)
    for method in ("POST", "PUT", "DELETE"):
        response = client.request(method, "/api/v1/openapi.yaml")
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET, HEAD"


def test_behind_a_path_prefix_only_the_servers_block_changes(app):
    with TestClient(app, root_path="/gateway") as prefixed:
        served_json = prefixed.get("/gateway/api/v1/openapi.json")
        served_yaml = prefixed.get("/gateway/api/v1/openapi.yaml")
    assert served_json.status_code == served_yaml.status_code == 200
    expected = load_spec(spec_path())
    expected["servers"][0]["url"] = "/gateway/api/v1"
    assert served_json.json() == expected
    assert yaml.safe_load(served_yaml.text) == yaml.safe_load(json.dumps(expected))


def test_swagger_ui_renders_the_served_file_without_a_key(client):
    redirect = client.get("/api/v1/ui", follow_redirects=False)
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/api/v1/ui/")
    page = client.get("/api/v1/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"/api/v1/openapi.json"' in client.get("/api/v1/ui/swagger-initializer.js").text
    assert client.get("/api/v1/ui/swagger-ui-config.json").json()["displayOperationId"] is True
    assert client.get("/api/v1/ui/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/ui/", "/api/v1/ui/swagger-initializer.js", "/api/v1/openapi.json"])
def test_the_docs_allow_only_their_own_scripts_and_no_framing(client, path):
    response = client.get(path)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy or "unsafe-inline" not in policy.split("script-src", 1)[1].split(";")[0]
    assert response.headers["x-content-type-options"] == "nosniff"
    # The page runs no inline script (the policy would block it): everything it runs is a file.
    if path.endswith("/ui/"):
        assert "<script>" not in response.text


def test_the_api_itself_still_requires_a_key(client):
    response = client.get("/api/v1/sessions")
    assert_error(response, 401, "unauthenticated")
