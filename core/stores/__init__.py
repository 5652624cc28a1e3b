"""Object stores for session artifacts (floor 1): one small interface, two implementations.

`base` holds the interface every store implements (an upload URL, a download URL, head,
digest, delete, a bounded listing) and the errors they raise; `files` keeps objects in a
folder of this host and hands out URLs this server answers, signed with HMAC; `s3` keeps them
in any S3-compatible store (AWS S3, MinIO, Cloudflare R2, SeaweedFS) and hands out presigned
SigV4 URLs; `disposition` is the `Content-Disposition` both give downloads. `opened()` picks
one from the store URL (`file://...` or `s3://BUCKET/PREFIX`).

A store knows keys and bytes, never sessions or organizations: the data layer names the keys.
"""

from __future__ import annotations

from sessions_api.core.stores.base import (
    BadSignature,
    ChecksumMismatch,
    Download,
    ListedObject,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    TooLarge,
    Upload,
)


def opened(url: str, *, url_base: str, s3_endpoint_url: str | None = None, s3_region: str | None = None) -> ObjectStore:
    """The store `url` names: `file:///abs/dir`, `file://./rel/dir` or `s3://BUCKET/PREFIX`.
    `url_base` is where this server answers a file store's signed URLs."""
    if url.startswith("file://"):
        from sessions_api.core.stores.files import FileStore

        return FileStore(url.removeprefix("file://"), url_base=url_base)
    if url.startswith("s3://"):
        from sessions_api.core.stores.s3 import S3Store

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3Store(bucket, prefix, endpoint_url=s3_endpoint_url, region=s3_region)
    raise ValueError(f"an artifact store is file://DIRECTORY or s3://BUCKET/PREFIX, not {url!r}")


__all__ = [
    "BadSignature",
    "ChecksumMismatch",
    "Download",
    "ListedObject",
    "ObjectStore",
    "StoredObject",
    "StoreUnavailable",
    "TooLarge",
    "Upload",
    "opened",
]
