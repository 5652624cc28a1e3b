"""Handlers of the Artifact files tag: the file store's uploads and downloads through this
server, at URLs whose signature is the credential (`security: []`)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from starlette.responses import FileResponse, Response

from sessions_api.core.stores.disposition import attachment
from sessions_api.models.artifacts import transfers

# What a browser must not do with a file it downloads from this origin: guess another type
# (nosniff), or run it as a page of this origin (a sandbox without scripts).
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "private, no-store",
}


async def putArtifactFile(token: str, body: AsyncIterable[bytes]) -> Response:
    await transfers.receive_upload(token, body)
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def getArtifactFile(token: str, range: str | None = None) -> Response:
    found = transfers.download_file(token, range)
    headers = {**_DOWNLOAD_HEADERS, "Content-Disposition": attachment(found.name)}
    return _File(found.path, media_type=found.content_type, headers=headers)


class _File(FileResponse):
    chunk_size = 1024 * 1024  # fewer, larger writes: the rate of a large download
