"""Handlers of the Artifact files tag: the file store's uploads and downloads through this
server, at URLs whose signature is the credential (`security: []`)."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from sessions_api.core.metrics import ARTIFACT_UPLOAD_BYTES
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
    ARTIFACT_UPLOAD_BYTES.inc(await transfers.receive_upload(token, body))
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def getArtifactFile(token: str, range: str | None = None) -> Response:
    found = await transfers.download_file(token, range)
    headers = {**_DOWNLOAD_HEADERS, "Content-Disposition": attachment(found.name)}
    return _File(found.path, media_type=found.content_type, headers=headers, ranges=found.ranges)


class _File(FileResponse):
    """The file, with its Range header ignored when the data layer found it of another form."""

    chunk_size = 1024 * 1024  # fewer, larger writes: the rate of a large download

    def __init__(self, *args: Any, ranges: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ranges = ranges

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.ranges:
            scope = {**scope, "headers": [(name, value) for name, value in scope["headers"] if name != b"range"]}
        await super().__call__(scope, receive, send)
