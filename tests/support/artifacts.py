"""Artifacts as a client makes them: declare, send the bytes where the answer says, complete."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx

API = "/api/v1"


@dataclass(frozen=True)
class Payload:
    data: bytes
    type: str = "device_log"
    name: str = "logcat.txt"
    content_type: str = "text/plain"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def declared(self, **changes: Any) -> dict[str, Any]:
        body = {
            "type": self.type,
            "name": self.name,
            "contentType": self.content_type,
            "size": len(self.data),
            "sha256": self.sha256,
        }
        return {**body, **changes}


def send(client, upload: dict[str, Any], data: bytes, **headers: str) -> httpx.Response:
    """PUT `data` as `upload` says: to this server through `client` (the file store's URLs are
    its paths) or to the S3 store itself (an absolute URL)."""
    sent = {**upload["headers"], **headers}
    if upload["url"].startswith("http"):
        return httpx.put(upload["url"], content=data, headers=sent, timeout=60)
    return client.put(upload["url"], content=data, headers=sent)


def fetch(client, url: str, **headers: str) -> httpx.Response:
    if url.startswith("http"):
        return httpx.get(url, headers=headers, timeout=60)
    return client.get(url, headers=headers)


def attach(client, member_headers: dict[str, str], session_id: str, payload: Payload) -> dict[str, Any]:
    """Declare, upload and complete an artifact; the completed artifact."""
    created = client.post(f"{API}/sessions/{session_id}/artifacts", json=payload.declared(), headers=member_headers)
    assert created.status_code == 201, created.text
    sent = send(client, created.json()["upload"], payload.data)
    assert sent.status_code in (200, 204), sent.text
    completed = client.post(
        f"{API}/sessions/{session_id}/artifacts/{created.json()['id']}/complete", headers=member_headers
    )
    assert completed.status_code == 200, completed.text
    return completed.json()
