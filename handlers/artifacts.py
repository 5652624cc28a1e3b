"""Handlers of the Artifacts tag: the files a session produced."""

from __future__ import annotations

import uuid
from typing import Any

from sessions_api.core.stores import Download, Upload
from sessions_api.core.timestamps import format_utc
from sessions_api.handlers.listing import list_body
from sessions_api.handlers.sessions import API_BASE
from sessions_api.models.artifacts import records
from sessions_api.models.paging import cursor


def createArtifact(
    sessionId: str, body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int, dict[str, str]]:
    declared = records.Declared(body["type"], body["name"], body["contentType"], body["size"], body["sha256"].lower())
    created = records.create_artifact(token_info["principal"], uuid.UUID(sessionId), declared)
    artifact = {**artifact_json(created.row), "upload": _upload_json(created.upload)}
    return artifact, 201, {"Location": f"{API_BASE}/sessions/{sessionId}/artifacts/{artifact['id']}"}


def completeArtifact(sessionId: str, artifactId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    row = records.complete_artifact(token_info["principal"], uuid.UUID(sessionId), uuid.UUID(artifactId))
    return artifact_json(row)


def listArtifacts(
    sessionId: str, token_info: dict[str, Any], limit: int = 100, before: str | None = None, type: str | None = None
) -> dict[str, Any]:
    organization_id = token_info["principal"].organization_id
    page = records.list_artifacts(organization_id, uuid.UUID(sessionId), limit, cursor(before), type)
    return list_body(page, artifact_json)


def getArtifact(sessionId: str, artifactId: str, token_info: dict[str, Any]) -> dict[str, Any]:
    row, download = records.get_artifact(token_info["principal"], uuid.UUID(sessionId), uuid.UUID(artifactId))
    artifact = artifact_json(row)
    if download is not None:
        artifact["download"] = _download_json(download)
    return artifact


def deleteArtifact(sessionId: str, artifactId: str, token_info: dict[str, Any]) -> tuple[None, int]:
    records.delete_artifact(token_info["principal"], uuid.UUID(sessionId), uuid.UUID(artifactId))
    return None, 204


def _upload_json(upload: Upload) -> dict[str, Any]:
    return {
        "url": upload.url,
        "method": upload.method,
        "headers": upload.headers,
        "expiresAt": format_utc(upload.expires_at),
    }


def _download_json(download: Download) -> dict[str, Any]:
    return {"url": download.url, "expiresAt": format_utc(download.expires_at)}


artifact_json = records.artifact_document
