"""Before anything is measured: the three servers must give the same answers.

For each request below, the status, the `WWW-Authenticate` header of 401s and the JSON body
must be identical across the servers (for 400s the status and error code only: their
messages are for people and differ by design); every 2xx/4xx must be `application/json`
and carry `X-Request-Id`.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

API = "/api/v1"


@dataclass(frozen=True)
class Probe:
    name: str
    path: str
    headers: dict


def probes(manifest: dict, ids: list[str]) -> list[Probe]:
    auth = {"Authorization": f"Bearer {manifest['secret']}"}
    big = {**auth, "X-Organization-Id": manifest["big_organization"]}
    bound = {"Authorization": f"Bearer {manifest['bound_secret']}"}
    rng = random.Random(1)
    checks = [
        Probe("first page", f"{API}/sessions?limit=100", big),
        Probe("default page size", f"{API}/sessions", big),
        Probe("deep page", f"{API}/sessions?limit=100&before={manifest['deep_before']}", big),
        Probe("last page", f"{API}/sessions?limit=500&before={manifest['deep_before']}", big),
        Probe("limit=1", f"{API}/sessions?limit=1", big),
        Probe(
            "before with an offset and 9 digits",
            f"{API}/sessions?limit=7&before=2026-01-01T01:30:00.123456789%2B01:30",
            big,
        ),
        Probe("before the first instant", f"{API}/sessions?before=0001-01-01T00:00:00Z", big),
        Probe("default organization (Personal, empty)", f"{API}/sessions?limit=5", auth),
        Probe(
            "second organization by header",
            f"{API}/sessions?limit=20",
            {**auth, "X-Organization-Id": manifest["second_organization"]},
        ),
        Probe("bound key, no header", f"{API}/sessions?limit=20", bound),
        Probe(
            "bound key, its own organization named",
            f"{API}/sessions?limit=3",
            {**bound, "X-Organization-Id": manifest["big_organization"]},
        ),
        Probe(
            "bound key, another organization",
            f"{API}/sessions",
            {**bound, "X-Organization-Id": manifest["second_organization"]},
        ),
        Probe("not a member", f"{API}/sessions", {**auth, "X-Organization-Id": manifest["other_organization"]}),
        Probe("no such organization", f"{API}/sessions", {**auth, "X-Organization-Id": str(uuid.UUID(int=7))}),
        Probe("organization header not a UUID", f"{API}/sessions", {**auth, "X-Organization-Id": "acme"}),
        Probe("unknown key", f"{API}/sessions", {"Authorization": "Bearer sapi_0123456789abcdef_" + "A" * 43}),
        Probe("malformed key", f"{API}/sessions", {"Authorization": "Bearer nope"}),
        Probe("no key", f"{API}/sessions", {}),
        Probe("revoked key", f"{API}/sessions", {"Authorization": f"Bearer {manifest['revoked_secret']}"}),
        Probe("wrong secret", f"{API}/sessions", {"Authorization": f"Bearer {manifest['secret'][:-4]}AAAA"}),
        Probe(
            "outsider on the big organization",
            f"{API}/sessions",
            {
                "Authorization": f"Bearer {manifest['outsider_secret']}",
                "X-Organization-Id": manifest["big_organization"],
            },
        ),
        Probe("session of another organization", f"{API}/sessions/{manifest['other_organization_session']}", big),
        Probe("no such session", f"{API}/sessions/{uuid.UUID(int=42)}", big),
        Probe("limit=0", f"{API}/sessions?limit=0", big),
        Probe("limit=501", f"{API}/sessions?limit=501", big),
        Probe("naive before", f"{API}/sessions?before=2026-01-01T00:00:00", big),
        Probe("malformed session id", f"{API}/sessions/not-a-uuid", big),
    ]
    for session_id in rng.sample(ids, min(8, len(ids))):
        checks.append(Probe(f"session {session_id}", f"{API}/sessions/{session_id}", big))
        checks.append(Probe(f"session {session_id} via bound key", f"{API}/sessions/{session_id}", bound))
    return checks


def _fetch(base_url: str, probe: Probe) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(base_url + probe.path, headers=probe.headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _observed(status: int, headers: dict, body: bytes) -> dict:
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {"status": status, "not JSON": body[:300].decode("utf-8", "replace")}
    if status == 400 and isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        parsed = {"error": {"code": parsed["error"]["code"]}}
    return {
        "status": status,
        "content-type": lower.get("content-type", "").split(";")[0],
        "has request id": bool(lower.get("x-request-id")),
        "www-authenticate": lower.get("www-authenticate"),
        "body": parsed,
    }


def check(base_urls: dict[str, str], manifest: dict, ids: list[str]) -> list[str]:
    """Compare every server with the first; returns the differences (empty when all agree)."""
    problems = []
    names = list(base_urls)
    for probe in probes(manifest, ids):
        seen = {name: _observed(*_fetch(url, probe)) for name, url in base_urls.items()}
        first = seen[names[0]]
        if first["content-type"] != "application/json" or not first["has request id"]:
            problems.append(
                f"{probe.name}: {names[0]} answered {first['content-type']!r}, request id {first['has request id']}"
            )
        for name in names[1:]:
            if seen[name] != first:
                problems.append(
                    f"{probe.name} ({probe.path}): {name} differs from {names[0]}:\n"
                    f"  {names[0]}: {json.dumps(first)[:600]}\n  {name}: {json.dumps(seen[name])[:600]}"
                )
    return problems
