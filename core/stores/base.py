"""What every object store offers the data layer, and the errors its transfers raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Upload:
    """Where and how a client sends an object's bytes: `method` to `url` with `headers`,
    until `expires_at`."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class Download:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class StoredObject:
    """What the store says of an object: its size and, where it keeps one, its SHA-256 (hex)."""

    size: int
    sha256: str | None


@dataclass(frozen=True)
class ListedObject:
    key: str


class ObjectStore(Protocol):
    """An object store: keys to bytes, reached by clients through expiring URLs.

    Every method blocks (a file system or the network): call them off the event loop."""

    kind: str  # `file` or `s3`, for logs and metrics

    # `holder` names who the URL is given to (models.artifacts): a store that serves its URLs
    # itself (the file store) signs it in, so that the URL ends with its holder's grant; a
    # presigned URL (S3) is a bearer grant until it expires.
    def upload(
        self, key: str, *, size: int, sha256: str, content_type: str, expires_at: datetime, holder: str = ""
    ) -> Upload: ...

    def download(
        self, key: str, *, name: str, content_type: str, expires_at: datetime, holder: str = ""
    ) -> Download: ...

    def head(self, key: str) -> StoredObject | None: ...

    def digest(self, key: str) -> str | None:
        """The object's SHA-256 (hex), read through; None when it is not there."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; nothing when it is not there."""
        ...

    def listing(self, prefix: str, *, after: str, limit: int) -> Sequence[ListedObject]:
        """Up to `limit` objects whose keys start with `prefix`, in key order after `after`."""
        ...


class BadSignature(Exception):
    """A signed URL that was tampered with, or has expired."""


class TooLarge(Exception):
    """More bytes than the upload declared."""


class ChecksumMismatch(Exception):
    """The bytes received are not the ones the upload declared (size or SHA-256)."""


class StoreUnavailable(Exception):
    """The store did not answer, refused us, or could not keep the bytes (a disk full): a
    passing condition on the operator's side, never the caller's fault."""
