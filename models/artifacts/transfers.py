"""The file store's transfers through this server: an upload streamed to the store and a
download served from it, each at a URL the store signed (core.stores.files).

An upload is taken only while its artifact is pending: a deleted, failed or expired
artifact's URL is refused even before it expires (its grant ended with it). Either URL is
refused too once the key it was given to stops working, or its user leaves the organization
or (for an upload) loses the role to write (models.grant_ends.holder_may)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.stores import BadSignature, ChecksumMismatch, TooLarge
from sessions_api.core.stores.files import GET, PUT, FileStore
from sessions_api.models import grant_ends
from sessions_api.models.artifacts.storage import artifact_of, store
from sessions_api.models.errors import Conflict, Forbidden, NotFound, RangeNotSatisfiable, Unprocessable
from sessions_api.models.errors import TooLarge as ArtifactTooLarge
from sessions_api.models.tables import Artifact, ArtifactStatus, Role

_NO_FILE = "No file is kept at this URL."
_GRANT_ENDED = "The URL's grant has ended: the key it was given to no longer has access to the organization."
# Who may upload an artifact's bytes (createArtifact's x-required-roles).
_UPLOADERS = frozenset({Role.admin, Role.readwrite})
_READERS = frozenset(Role)


@dataclass(frozen=True)
class File:
    path: Path
    name: str
    content_type: str
    ranges: bool = False  # whether a Range header asked for is to be honoured


def _file_store() -> FileStore:
    """The file store; NotFound when this server keeps artifacts elsewhere (its URLs are the store's)."""
    objects = store()
    if not isinstance(objects, FileStore):
        raise NotFound(_NO_FILE)
    return objects


async def receive_upload(token: str, chunks: AsyncIterable[bytes]) -> int:
    """Store an upload's bytes; how many. Forbidden for a tampered or expired URL, Conflict when its
    artifact is no longer pending, TooLarge past the declared size, Unprocessable when the
    bytes are not the declared ones (nothing is stored then, and the URL may be used again)."""
    objects = _file_store()
    try:
        grant = objects.verified(token, PUT)
    except BadSignature as exc:
        raise Forbidden(str(exc)) from None
    # Imported here: db_threads imports the metrics, which `serve` sets up before any import of them.
    from sessions_api.core import db_threads

    if not await db_threads.read(grant_ends.holder_may, grant.holder, _UPLOADERS):
        raise Forbidden(_GRANT_ENDED)
    artifact_id = artifact_of(grant.key)
    if artifact_id is None or not await db_threads.read(_is_pending, artifact_id):
        raise Conflict("artifact_not_pending", "The artifact is no longer pending: its upload URL has ended.")
    try:
        await objects.receive(grant, chunks)
    except TooLarge:
        raise ArtifactTooLarge(
            "artifact_too_large", f"The upload sent more than the {grant.size} bytes its artifact declared."
        ) from None
    except ChecksumMismatch as exc:
        raise Unprocessable("checksum_mismatch", f"The upload sent {exc}; nothing was stored.") from None
    return grant.size


def _is_pending(artifact_id: uuid.UUID) -> bool:
    with db.reading() as conn:
        status = conn.execute(select(col(Artifact.status)).where(col(Artifact.id) == artifact_id)).scalar()
    return status == ArtifactStatus.pending


async def download_file(token: str, ranges: str | None = None) -> File:
    """The file a download URL names. Forbidden for a tampered or expired URL; NotFound when
    the artifact's bytes are gone (deleted or expired); RangeNotSatisfiable when `ranges` (a
    Range header) asks only for bytes beyond its end. A Range header of another form is to be
    ignored (`File.ranges` is False): the whole file is sent."""
    objects = _file_store()
    try:
        grant = objects.verified(token, GET)
    except BadSignature as exc:
        raise Forbidden(str(exc)) from None
    from sessions_api.core import db_threads  # as in receive_upload: the metrics set up first

    if not await db_threads.read(grant_ends.holder_may, grant.holder, _READERS):
        raise Forbidden(_GRANT_ENDED)
    path = objects.path_of(grant.key)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFound(_NO_FILE) from None
    parts = _byte_ranges(ranges) if ranges is not None else None
    if parts is not None and not all(_starts_within(first, suffix, size) for first, suffix in parts):
        raise RangeNotSatisfiable(size)
    return File(path, grant.name, grant.content_type, parts is not None)


_RANGE = re.compile(r"(?:(\d+)-(\d*)|-(\d+))")


def _byte_ranges(header: str) -> list[tuple[int | None, int]] | None:
    """The ranges of `bytes=A-B, C-, -N` as (first, last or suffix length), or None when the
    header is of another form (RFC 9110: a server may then ignore it)."""
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    parts: list[tuple[int | None, int]] = []
    for spec in specs.split(","):
        found = _RANGE.fullmatch(spec.strip())
        if found is None:
            return None
        first, last, suffix = found.groups()
        if suffix is not None:
            parts.append((None, int(suffix)))
        elif last and int(last) < int(first):
            return None  # an invalid range makes the whole header invalid
        else:
            parts.append((int(first), 0))
    return parts


def _starts_within(first: int | None, suffix: int, size: int) -> bool:
    """Whether a range starts within `size` bytes (a suffix of 0 bytes never does)."""
    return (first < size) if first is not None else (suffix > 0 and size > 0)
