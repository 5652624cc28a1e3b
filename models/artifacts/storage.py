"""The object store the settings name, and where each artifact's bytes live in it."""

from __future__ import annotations

import functools
import uuid

from sessions_api.core import settings
from sessions_api.core.stores import ObjectStore, opened

# Where this server answers the file store's signed URLs (the spec's artifact-files operations).
FILES_PATH = "/api/v1/artifact-files"


def store() -> ObjectStore:
    """The store of the bound settings (one per distinct configuration, kept for the process)."""
    config = settings.current()
    return _opened(config.artifact_store_url(), config.public_url.rstrip("/"), config.s3_endpoint_url, config.s3_region)


@functools.cache
def _opened(url: str, public_url: str, endpoint_url: str | None, region: str | None) -> ObjectStore:
    return opened(url, url_base=public_url + FILES_PATH, s3_endpoint_url=endpoint_url, s3_region=region)


def object_key(organization_id: uuid.UUID, session_id: uuid.UUID, artifact_id: uuid.UUID) -> str:
    """`ORGANIZATION/SESSION/ARTIFACT`: one folder per tenant, listed in order by the orphan sweep."""
    return f"{organization_id}/{session_id}/{artifact_id}"


def artifact_of(key: str) -> uuid.UUID | None:
    """The artifact id a key of ours ends with; None for any other key."""
    try:
        return uuid.UUID(key.rsplit("/", 1)[-1])
    except ValueError:
        return None
