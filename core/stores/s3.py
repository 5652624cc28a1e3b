"""The S3 store: objects in a bucket of any S3-compatible service, through boto3.

Credentials come from the standard AWS chain (environment, shared files, instance roles);
`endpoint_url` names a store other than AWS (MinIO, R2, SeaweedFS), addressed by path.
URLs are presigned with SigV4. An upload URL carries the declared size and SHA-256
(`x-amz-checksum-sha256`, base64) among its signed headers, so that a store that checks
checksums refuses other bytes; a download URL carries the content type and the disposition.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sessions_api.core.stores.base import Download, ListedObject, StoredObject, StoreUnavailable, Upload
from sessions_api.core.stores.disposition import attachment
from sessions_api.core.timestamps import utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_READ = 1024 * 1024
# SigV4's limit on a presigned URL's life.
_MOST_SECONDS = 7 * 24 * 3600


class S3Store:
    kind = "s3"

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, region: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self.client: S3Client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)

    def upload(
        self, key: str, *, size: int, sha256: str, content_type: str, expires_at: datetime, holder: str = ""
    ) -> Upload:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        url = self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.prefix + key,
                "ContentType": content_type,
                "ContentLength": size,
                "ChecksumSHA256": checksum,
            },
            ExpiresIn=_seconds_until(expires_at),
        )
        return Upload(url, "PUT", {"Content-Type": content_type, "x-amz-checksum-sha256": checksum}, expires_at)

    def download(self, key: str, *, name: str, content_type: str, expires_at: datetime, holder: str = "") -> Download:
        url = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.prefix + key,
                "ResponseContentDisposition": attachment(name),
                "ResponseContentType": content_type,
            },
            ExpiresIn=_seconds_until(expires_at),
        )
        return Download(url, expires_at)

    def head(self, key: str) -> StoredObject | None:
        with _answered() as missing:
            found = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key, ChecksumMode="ENABLED")
        if missing:
            return None
        checksum = found.get("ChecksumSHA256")
        # A checksum of a multipart upload ("...-N") is not the object's SHA-256: read it through.
        sha256 = base64.b64decode(checksum).hex() if checksum and "-" not in checksum else None
        return StoredObject(int(found["ContentLength"]), sha256)

    def digest(self, key: str) -> str | None:
        hasher = hashlib.sha256()
        with _answered() as missing:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            with body:  # (entered, a StreamingBody gives its raw stream, without iter_chunks)
                for block in body.iter_chunks(_READ):
                    hasher.update(block)
        return None if missing else hasher.hexdigest()

    def delete(self, key: str) -> None:
        with _answered():
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def listing(self, prefix: str, *, after: str, limit: int) -> Sequence[ListedObject]:
        with _answered():
            found = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=self.prefix + prefix, StartAfter=self.prefix + after, MaxKeys=limit
            )
        return [ListedObject(item["Key"].removeprefix(self.prefix)) for item in found.get("Contents", [])]


class _Missing:
    """Whether the object a store call asked for was not there (truthy then)."""

    found_missing = False

    def __bool__(self) -> bool:
        return self.found_missing


@contextlib.contextmanager
def _answered() -> Iterator[_Missing]:
    """A store call's errors as ours: an object not there is noted (the caller decides what it
    means; deleting one is done), anything else is StoreUnavailable, with what the store said."""
    missing = _Missing()
    try:
        yield missing
    except ClientError as exc:
        found = exc.response.get("Error", {})
        if str(found.get("Code")) in {"404", "NoSuchKey", "NotFound"}:
            missing.found_missing = True
            return
        said = f"the store answered {found.get('Code', '?')}: {found.get('Message', '')}".strip()
        raise StoreUnavailable(said) from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(str(exc)) from exc


def _seconds_until(instant: datetime) -> int:
    return max(1, min(_MOST_SECONDS, round((instant - utcnow()).total_seconds())))
