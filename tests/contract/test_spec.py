"""The contract itself: valid OpenAPI 3.0.3, complete operations, examples that validate."""

from __future__ import annotations

import re

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from sessions_api.core.resources import spec_path

METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(spec_path().read_text())


def _resolve(node, root):
    """The spec with every local $ref replaced by what it points to."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            target = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, root)
        return {key: _resolve(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, root) for item in node]
    return node


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_spec_is_valid_openapi_3_0_3(spec):
    spec_dict, base_uri = read_from_filename(str(spec_path()))
    validate(spec_dict, base_uri=base_uri)
    assert spec["openapi"] == "3.0.3"


# What each operation may answer besides 400, 401, 500 and 503, which every operation may.
STATUSES = {
    "listSessions": {"200", "403"},
    "getSession": {"200", "403", "404"},
    "createSession": {"201", "202", "403", "409", "415", "422"},
    "releaseSession": {"200", "403", "404"},
    "updateSession": {"200", "403", "404", "409", "415"},
    "listSessionRequests": {"200", "403"},
    "getSessionRequest": {"200", "403", "404"},
    "cancelSessionRequest": {"200", "403", "404", "409"},
    "listDevices": {"200", "403"},
    "listOrganizations": {"200", "403"},
    "createOrganization": {"201", "403", "409", "415"},
    # The path names the organization: one the caller may not see is a 404, never a 403.
    "getOrganization": {"200", "404"},
    "renameOrganization": {"200", "403", "404", "415", "422"},
    "listMembers": {"200", "404"},
    "getUsage": {"200", "403", "404"},
    "getConcurrency": {"200", "404"},
    "listInvitations": {"200", "403", "404"},
    "createInvitation": {"201", "403", "404", "409", "415", "422"},
    "revokeInvitation": {"204", "403", "404", "409"},
    "listMyInvitations": {"200", "403"},
    "acceptInvitation": {"200", "403", "404", "409"},
    "declineInvitation": {"200", "403", "404", "409"},
    "changeMemberRole": {"200", "403", "404", "409", "415"},
    "removeMember": {"204", "403", "404", "409"},
    "listApiKeys": {"200", "403"},
    "createApiKey": {"201", "403", "409", "415", "422"},
    "revokeApiKey": {"200", "403", "404"},
    "listAuditEvents": {"200", "403"},
    "getMe": {"200", "403"},
    "listWebhookEndpoints": {"200", "403"},
    "createWebhookEndpoint": {"201", "403", "409", "415", "422"},
    "getWebhookEndpoint": {"200", "403", "404"},
    "updateWebhookEndpoint": {"200", "403", "404", "415", "422"},
    "deleteWebhookEndpoint": {"204", "403", "404"},
    "rotateWebhookEndpointSecret": {"200", "403", "404"},
    "testWebhookEndpoint": {"200", "403", "404"},
    "listWebhookDeliveries": {"200", "403", "404"},
    "listArtifacts": {"200", "403", "404"},
    "createArtifact": {"201", "403", "404", "409", "415"},
    "getArtifact": {"200", "403", "404"},
    "deleteArtifact": {"204", "403", "404"},
    "completeArtifact": {"200", "403", "404", "409", "422"},
    "listEvents": {"200", "403", "410"},
}
# Operations at URLs whose signature is the credential (`security: []`): no key, no organization,
# no rate limit; and what each may answer besides 400, 431, 500 and 503.
SIGNED_URL_STATUSES = {
    "putArtifactFile": {"204", "403", "404", "409", "413", "415", "422"},
    "getArtifactFile": {"200", "206", "403", "404", "416"},
}

# Who may call what, as the security handler enforces it; every other operation is open to
# every member (removeMember, listApiKeys and revokeApiKey then check the target, see their
# descriptions and tests/api/test_roles.py).
# Default-deny: every operation names its roles; these are the ones not open to every member.
EVERY_MEMBER = ["admin", "readwrite", "readonly"]
REQUIRED_ROLES = {
    **{operation_id: EVERY_MEMBER for operation_id in STATUSES},
    "createSession": ["admin", "readwrite"],
    "releaseSession": ["admin", "readwrite"],
    "updateSession": ["admin", "readwrite"],
    "cancelSessionRequest": ["admin", "readwrite"],
    "renameOrganization": ["admin"],
    "listInvitations": ["admin"],
    "createInvitation": ["admin"],
    "revokeInvitation": ["admin"],
    "changeMemberRole": ["admin"],
    "listAuditEvents": ["admin"],
    "getUsage": ["admin"],
    "createArtifact": ["admin", "readwrite"],
    "completeArtifact": ["admin", "readwrite"],
    "deleteArtifact": ["admin", "readwrite"],
    **{operation_id: [] for operation_id in SIGNED_URL_STATUSES},
    **{operation_id: ["admin"] for operation_id in STATUSES if "Webhook" in operation_id},
}


def test_every_operation_is_fully_documented(spec):
    operation_ids = set()
    for path, method, operation in _operations(spec):
        where = f"{method.upper()} {path}"
        assert re.fullmatch(r"[a-z]+[A-Z][A-Za-z]*", operation["operationId"]), where
        operation_ids.add(operation["operationId"])
        assert operation["summary"] and operation["description"], where
        assert len(operation["tags"]) == 1, where
        if operation["operationId"] in SIGNED_URL_STATUSES:
            assert operation["security"] == [], where
            expected = SIGNED_URL_STATUSES[operation["operationId"]] | {"400", "431", "500", "503"}
        else:
            assert operation["security"] == [{"bearerAuth": []}], where
            # Every operation may meet a body or headers over the limits, and a rate limit.
            expected = STATUSES[operation["operationId"]] | {"400", "401", "413", "429", "431", "500", "503"}
        if "requestBody" in operation:
            assert "415" in expected, where
        assert set(operation["responses"]) == expected, where
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert response["$ref"].startswith("#/components/responses/"), where
            else:
                assert "X-Request-Id" in response["headers"], where
    assert operation_ids == set(STATUSES) | set(SIGNED_URL_STATUSES)


def test_operations_name_the_roles_that_may_call_them(spec):
    declared = {operation["operationId"]: operation.get("x-required-roles") for _, _, operation in _operations(spec)}
    assert declared == REQUIRED_ROLES


def test_the_path_names_the_organization_where_it_has_one(spec):
    """Operations under /organizations/{organizationId} do not take X-Organization-Id."""
    for path, method, operation in _operations(spec):
        names = {parameter["$ref"].rsplit("/", 1)[-1] for parameter in operation.get("parameters", [])}
        if "{organizationId}" in path:
            assert "OrganizationPathId" in names and "OrganizationId" not in names, f"{method} {path}"
        elif operation["operationId"] in SIGNED_URL_STATUSES:
            assert "OrganizationId" not in names, f"{method} {path}"  # the URL names its artifact
        else:
            assert "OrganizationId" in names, f"{method} {path}"


def test_every_error_response_uses_the_envelope(spec):
    for name, response in spec["components"]["responses"].items():
        content = response["content"]
        assert list(content) == ["application/json"], name
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, name
        assert "X-Request-Id" in response["headers"], name
    assert "WWW-Authenticate" in spec["components"]["responses"]["Unauthenticated"]["headers"]
    assert "Retry-After" in spec["components"]["responses"]["Unavailable"]["headers"]


def _examples_with_schemas(spec):
    resolved = _resolve(spec, spec)
    for path, method, operation in _operations(resolved):
        for parameter in operation.get("parameters", []):
            yield f"{method} {path} parameter {parameter['name']}", parameter["example"], parameter["schema"]
        for media in operation.get("requestBody", {}).get("content", {}).values():
            if _is_bytes(media):
                continue
            for name, example in media["examples"].items():
                yield f"{method} {path} request {name}", example["value"], media["schema"]
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                if _is_bytes(media):
                    continue
                examples = media.get("examples", {})
                assert examples, f"{method} {path} {status} has no example"
                for name, example in examples.items():
                    yield f"{method} {path} {status} {name}", example["value"], media["schema"]


def _is_bytes(media):
    """A file's bytes (an artifact's), of which no example says anything."""
    return media["schema"].get("format") == "binary"


def test_every_example_validates_against_its_schema(spec):
    checked = 0
    for where, value, schema in _examples_with_schemas(spec):
        errors = list(OAS30Validator(schema).iter_errors(value))
        assert not errors, f"{where}: {errors[0].message}"
        checked += 1
    assert checked >= 15


def test_every_component_is_used(spec):
    text = spec_path().read_text()
    for section, entries in spec["components"].items():
        if section == "securitySchemes":
            continue
        for name in entries:
            assert f"#/components/{section}/{name}'" in text, f"components/{section}/{name} is never referenced"


def test_every_link_names_an_operation_and_its_parameters(spec):
    """Links drive Schemathesis's stateful phase and document how operations chain: each one
    targets an operation that exists and fills only path parameters it has, from a field the
    source's response has (or a path parameter of the source request)."""
    resolved = _resolve(spec, spec)
    by_id = {operation["operationId"]: (path, operation) for path, _method, operation in _operations(resolved)}
    for source_path, method, source in _operations(resolved):
        for status, response in source["responses"].items():
            for name, link in response.get("links", {}).items():
                where = f"{method} {source_path} {status} {name}"
                target_path, target = by_id[link["operationId"]]
                path_parameters = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                assert set(link["parameters"]) == path_parameters, where
                for expression in link["parameters"].values():
                    if expression.startswith("$request.path."):
                        assert "{" + expression.removeprefix("$request.path.") + "}" in source_path, where
                        continue
                    schema = response["content"]["application/json"]["schema"]
                    for part in expression.removeprefix("$response.body#/").split("/"):
                        schema = _property(schema, part)
                        assert schema is not None, where


def _property(schema, part):
    """The schema of `part` (a property name or an array index) within `schema`, allOf merged."""
    if part.isdigit():
        return schema.get("items")
    for branch in [schema, *schema.get("allOf", [])]:
        if part in branch.get("properties", {}):
            return branch["properties"][part]
    return None


# What no free text in a request may hold: C0 and C1 controls other than tab and line feed,
# and the bidirectional controls (a text that reads as another).
_NEVER_IN_REQUEST_TEXT = ["a\x00b", "a\x01b", "a\rb", "a\x7fb", "a\x85b", "a\u202eb", "a\u2066b", "a\u2069b"]


def _request_strings(node, where):
    """(where, schema) of every string schema in a request body, through objects, maps, arrays
    and anyOf branches."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "string":
        yield where, node
    for name, child in node.get("properties", {}).items():
        yield from _request_strings(child, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _request_strings(node[key], f"{where}[{key}]")
    for branch in node.get("anyOf", []) + node.get("allOf", []):
        yield from _request_strings(branch, where)


def test_free_text_in_requests_refuses_controls_and_bidirectional_controls(spec):
    """Every string a request body carries is an enum, a date-time, or text under a pattern that
    refuses them: one rule for every text a caller gives (values already stored are answered
    as they are)."""
    resolved = _resolve(spec, spec)
    checked = 0
    for path, method, operation in _operations(resolved):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        for where, schema in _request_strings(body, f"{method} {path}"):
            if "enum" in schema or schema.get("format") == "date-time":
                continue
            assert "pattern" in schema, where
            pattern = re.compile(schema["pattern"])
            accepted = [text for text in _NEVER_IN_REQUEST_TEXT if pattern.search(text)]
            assert accepted == [], f"{where} accepts {accepted!r}"
            checked += 1
    assert checked > 10
