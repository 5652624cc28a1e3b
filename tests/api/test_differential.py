"""The differential test: requests to every operation, encoded every way a client (or an
attacker) might, and one promise checked after each: the server read the request one way.

Hypothesis takes each operation of the app's table and sends it with its documented example
body or parameters, then varies the encoding: the body in another charset, repeated names in
a JSON object, headers and query parameters sent twice, names percent-encoded, `+` against
`%20`, empty values. Whatever it sends:

- no answer is a 500;
- a JSON body declared in a charset other than UTF-8 is 415, and a single-valued parameter
  or header sent twice is 400 (a header whatever else is wrong with the request; a query
  parameter unless the caller may not act on the organization);
- everything stored satisfies the spec: every collection an admin can read answers 200 with
  response validation on (tests' apps validate every response against the spec), and no
  idempotency key longer than the spec allows was kept.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from connexion.json_schema import resolve_refs
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from sessions_api.core import db, resources
from sessions_api.models import IdempotencyRecord, Role, api_keys
from tests.support.api import API, invitations_path

SPEC = resolve_refs(yaml.safe_load(resources.spec_path().read_text()))
BYTES_TYPES = ["application/octet-stream", "Application/Octet-Stream", "application/json", "text/plain; charset=utf-7"]
CHARSETS = [None, "utf-8", "UTF-8", '"utf-8"', "utf-7", "UTF-7", "utf-16", "latin-1", '"iso-8859-1"']
MAX_IDEMPOTENCY_KEY = SPEC["components"]["parameters"]["IdempotencyKey"]["schema"]["maxLength"]
READ_BACK = [
    "/sessions?limit=500",
    "/devices?limit=500",
    "/organizations",
    "/api-keys?scope=organization",
    "/audit-events?limit=500",
    "/webhook-endpoints",
    "/me",
    "/me/invitations",
]


def _operation_specs() -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for item in SPEC["paths"].values()
        for method, operation in item.items()
        if method in ("get", "post", "patch", "put", "delete")
    }


OPERATIONS = _operation_specs()
WRITES = {
    operation["operationId"]
    for item in SPEC["paths"].values()
    for method, operation in item.items()
    if method in ("post", "patch", "put", "delete")
}


@pytest.fixture
def fleet(world, team, admin):
    """What the operations' paths can name: devices, a live session, an endpoint, a key."""
    for n in range(4):
        world.device(platform="ios", type="simulator", name=f"iPhone {n}", os_version="18.2")
        world.device(platform="android", type="emulator", name=f"Pixel {n}", os_version="15")
    world.sessions(team, admin.user, [None])
    # Never the admin's own key or membership: revoking or demoting those would end the test.
    other = world.member(of=[(team, Role.readwrite)])
    spare_key, _ = api_keys.create_key(admin.user.id)
    return {"organizationId": str(team.id), "userId": str(other.user.id), "keyId": str(spare_key.id)}


def _example_body(operation: dict[str, Any]) -> Any:
    content = operation["requestBody"]["content"]["application/json"]
    return next(iter(content["examples"].values()))["value"]


def _path_ids(client, admin, team, fleet) -> dict[str, str]:
    headers = admin.acting_on(team.id)
    ids = dict(fleet)
    for name, path in [("sessionId", "/sessions"), ("endpointId", "/webhook-endpoints")]:
        data = client.get(API + path, headers=headers).json()["data"]
        ids[name] = data[0]["id"] if data else str(uuid.uuid4())
    declared = {
        "type": "other",
        "name": "a.bin",
        "contentType": "application/octet-stream",
        "size": 3,
        "sha256": "0" * 64,
    }
    artifact = client.post(f"{API}/sessions/{ids['sessionId']}/artifacts", json=declared, headers=headers).json()
    ids["artifactId"], ids["token"] = artifact["id"], artifact["upload"]["url"].rsplit("/", 1)[-1]
    invited = {"email": "invitee@example.com", "role": "readonly"}
    ids["invitationId"] = client.post(invitations_path(team.id), json=invited, headers=admin.headers).json()["id"]
    return ids


def _query_value(parameter: dict[str, Any]) -> str:
    schema = parameter["schema"]
    if "enum" in schema:
        return str(schema["enum"][0])
    return str(parameter.get("example", schema.get("default", "x")))


def _encoded(text: str, plus_for_space: bool, percent_all: bool) -> str:
    if percent_all:
        return "".join(f"%{byte:02X}" for byte in text.encode())
    return quote(text, safe="").replace("%20", "+" if plus_for_space else "%20")


@st.composite
def requests(draw, operation_id: str):
    operation = OPERATIONS[operation_id]
    query: list[tuple[str, str]] = []
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "query" or not draw(st.booleans()):
            continue
        value = draw(st.sampled_from([_query_value(parameter), "", " ", "a+b", "%", "2026-11-28T09:14:03+01:00"]))
        query.append((parameter["name"], value))
        if draw(st.integers(0, 4)) == 0:
            query.append((parameter["name"], draw(st.sampled_from([value, "1", "live"]))))
    encoding = {"plus": draw(st.booleans()), "percent_names": draw(st.booleans())}
    headers: list[tuple[str, str]] = []
    if draw(st.integers(0, 5)) == 0:
        headers.append(("X-Organization-Id", draw(st.sampled_from(["", "not-an-id", str(uuid.uuid4())]))))
    if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])):
        for _ in range(draw(st.integers(0, 2))):
            headers.append(
                ("Idempotency-Key", draw(st.sampled_from(["ok1", "A" * 5000, f"k-{draw(st.integers(0, 3))}"])))
            )
    body = None
    if "application/octet-stream" in operation.get("requestBody", {}).get("content", {}):
        body = {  # bytes: streamed as they are, in the one media type the spec names
            "bytes": draw(st.binary(max_size=64)),
            "content_type": draw(st.sampled_from(BYTES_TYPES)),
        }
    elif "requestBody" in operation:
        body = {
            "value": _example_body(operation),
            "extra": draw(
                st.dictionaries(
                    st.sampled_from([*_example_body(operation), "colour", "maxDurationMinutes", "name"]),
                    st.one_of(
                        st.none(),
                        st.integers(-(10**6), 10**6),
                        st.text(max_size=600),
                        st.lists(st.integers(), max_size=3),
                    ),
                    max_size=3,
                )
            ),
            "repeat_first": draw(st.booleans()),
            "charset": draw(st.sampled_from(CHARSETS)),
        }
    return {"query": query, "encoding": encoding, "headers": headers, "body": body}


def _query_string(query: list[tuple[str, str]], plus: bool, percent_names: bool) -> str:
    return "&".join(f"{_encoded(name, plus, percent_names)}={_encoded(value, plus, False)}" for name, value in query)


def _body_bytes(body: dict[str, Any]) -> tuple[bytes, str]:
    """The example with the extra names after (or, repeated, before) its own: as text, so that
    names may repeat, encoded in the charset the Content-Type declares."""
    example = json.dumps(body["value"])
    extra = json.dumps(body["extra"])
    if body["extra"]:
        inner = extra[1:-1]
        example = "{" + (inner + "," + example[1:] if body["repeat_first"] else example[1:-1] + "," + inner + "}")
    charset = body["charset"]
    encoding = (charset or "utf-8").strip('"')
    content_type = "application/json" + (f"; charset={charset}" if charset else "")
    return example.encode(encoding, errors="replace"), content_type


def _repeated(operation: dict[str, Any], query, headers) -> tuple[bool, bool]:
    """(a single-valued query parameter sent twice, a header sent twice)."""
    single = {
        p["name"] for p in operation.get("parameters", []) if p["in"] == "query" and p["schema"].get("type") != "array"
    }
    names = [name for name, _ in query]
    header_names = [name.lower() for name, _ in headers]
    return any(names.count(name) > 1 for name in single), any(
        header_names.count(name) > 1 for name in set(header_names)
    )


def _send(client, admin, team, ids, operation_id, request):
    path, method = next(
        (path, method)
        for path, item in SPEC["paths"].items()
        for method, op in item.items()
        if op.get("operationId") == operation_id
    )
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    url = API + path
    if request["query"]:
        url += "?" + _query_string(request["query"], request["encoding"]["plus"], request["encoding"]["percent_names"])
    headers = [*admin.acting_on(team.id).items(), *request["headers"]]
    if any(name == "X-Organization-Id" for name, _ in request["headers"]) and "{organizationId}" not in path:
        headers = [*admin.headers.items(), *request["headers"]]
    content = None
    if request["body"] is not None and "bytes" in request["body"]:
        content = request["body"]["bytes"]
        headers.append(("Content-Type", request["body"]["content_type"]))
    elif request["body"] is not None:
        content, content_type = _body_bytes(request["body"])
        headers.append(("Content-Type", content_type))
    return client.request(method.upper(), url, content=content, headers=headers)


def _assert_all_stored_satisfies_the_spec(client, admin, team) -> None:
    for path in READ_BACK:
        answer = client.get(API + path, headers=admin.acting_on(team.id))
        assert answer.status_code == 200, (path, answer.text[:300])
    members = client.get(f"{API}/organizations/{team.id}/members", headers=admin.headers)
    assert members.status_code == 200, members.text[:300]
    with db.reading() as conn:
        longest = conn.execute(select(func.max(func.length(IdempotencyRecord.key)))).scalar()
    assert longest is None or longest <= MAX_IDEMPOTENCY_KEY


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_every_encoding_of_a_request_is_read_one_way(client, world, team, admin, fleet, operation_id):
    ids = _path_ids(client, admin, team, fleet)
    operation = OPERATIONS[operation_id]

    @hypothesis_settings(
        max_examples=int(os.environ.get("DIFFERENTIAL_EXAMPLES", "20")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=requests(operation_id))
    def check(request):
        answer = _send(client, admin, team, ids, operation_id, request)
        assert answer.status_code < 500 or answer.status_code == 503, answer.text[:300]
        repeated_query, repeated_header = _repeated(operation, request["query"], request["headers"])
        if repeated_header:  # refused before security, which reads headers
            assert answer.status_code == 400, answer.text[:300]
        elif repeated_query:  # refused once the caller may know the operation's parameters
            assert answer.status_code in (400, 403, 404), answer.text[:300]
        elif request["body"] is not None and "bytes" in request["body"]:
            if request["body"]["content_type"].lower() != "application/octet-stream":
                assert answer.status_code == 415, answer.text[:300]  # before the signature is read
        elif request["body"] is not None and (request["body"]["charset"] or "utf-8").strip('"').lower() != "utf-8":
            if answer.status_code not in (400, 401, 403, 404):  # refused before its body is read
                assert answer.status_code == 415, answer.text[:300]
        if answer.status_code < 300 and operation_id in WRITES:
            _assert_all_stored_satisfies_the_spec(client, admin, team)

    check()
