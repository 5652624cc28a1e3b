"""An artifact's life through the API: declared (`pending`, with an upload URL), completed
(`available`, once the store holds exactly the declared bytes, or `failed`), read (an
available one with a download URL) and deleted.

Each change keeps, in its own transaction, the session's `artifact_count` (its available
artifacts: a list of sessions stays one read) and the organization's `stored_bytes` (pending
uploads at their declared size and available artifacts: a quota check reads one row).
The store is asked (a HEAD, a digest) outside any transaction; an object is deleted after
the transaction that lets it go commits, so a row is never `available` without its object
(an object left behind is an orphan: models.artifacts.retention).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, func, insert, select, update
from sqlalchemy import delete as delete_rows
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.stores import Download, StoreUnavailable, Upload
from sessions_api.core.timestamps import format_utc, utcnow
from sessions_api.models import audit, grant_ends, plans, webhooks
from sessions_api.models.api_keys import Principal
from sessions_api.models.artifacts.storage import object_key, store
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import Conflict, NotFound, TooLarge, Unprocessable, limit_reached
from sessions_api.models.instants import InstantAllocator
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import Artifact, ArtifactStatus, AuditEventType, Organization, SessionRecord

logger = logging.getLogger(__name__)
# How long after a session ended artifacts may still be added to it.
ARTIFACT_WINDOW = timedelta(hours=24)
AVAILABLE_EVENT = "artifact.available"
_NO_SESSION = "No session with this id exists in the selected organization."
_NO_ARTIFACT = "No artifact with this id exists in this session."

# An artifact as the API answers it, its ids and instants already the API's text; the key and
# the organization's id (a UUID) for what the answer leads to (a URL, the webhook event).
_ARTIFACT_COLUMNS: tuple[Any, ...] = (
    uuid_text(col(Artifact.id)).label("id"),
    uuid_text(col(Artifact.session_id)).label("session_id"),
    uuid_text(col(Artifact.organization_id)).label("organization_text"),
    col(Artifact.type),
    col(Artifact.name),
    col(Artifact.content_type),
    col(Artifact.size),
    col(Artifact.sha256),
    col(Artifact.status),
    rfc3339_text(col(Artifact.created_at)).label("created_at"),
    rfc3339_text(col(Artifact.available_at)).label("available_at"),
    rfc3339_text(col(Artifact.retain_until)).label("retain_until"),
    uuid_text(col(Artifact.uploaded_by)).label("uploaded_by"),
    col(Artifact.object_key),
    col(Artifact.organization_id),
)
_ARTIFACT_VIEW: Select[Any] = select(*_ARTIFACT_COLUMNS)
# What a writer locks and reads of an artifact.
_LOCKED_COLUMNS: tuple[Any, ...] = (
    col(Artifact.id),
    col(Artifact.session_id),
    col(Artifact.organization_id),
    col(Artifact.status),
    col(Artifact.size),
    col(Artifact.object_key),
)


@dataclass(frozen=True)
class Declared:
    """What a caller says of the file it will upload."""

    type: str
    name: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Created:
    row: Row[Any]
    upload: Upload


def artifact_document(row: Row[Any]) -> dict[str, Any]:
    """A row of the artifact view as the API answers an artifact (and the `data` of its events)."""
    return {
        "id": row.id,
        "session": row.session_id,
        "organization": row.organization_text,
        "type": row.type,
        "name": row.name,
        "contentType": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "status": row.status,
        "createdAt": row.created_at,
        "availableAt": row.available_at,
        "retainUntil": row.retain_until,
        "uploadedBy": row.uploaded_by,
    }


def create_artifact(caller: Principal, session_id: uuid.UUID, declared: Declared) -> Created:
    """Record a pending artifact of a session of the caller's organization and sign its upload.
    TooLarge past the largest artifact; Conflict when the session ended more than 24 hours
    ago, holds the most artifacts, or the organization's storage would pass its plan."""
    config = settings.current()
    if declared.size > config.max_artifact_bytes:
        raise TooLarge(
            "artifact_too_large",
            f"An artifact may hold at most {config.max_artifact_bytes} bytes (SESSIONS_API_MAX_ARTIFACT_BYTES).",
        )
    organization_id = caller.organization_id
    now = utcnow()
    with db.writing() as conn:
        _lock_open_session(conn=conn, organization_id=organization_id, session_id=session_id, now=now)
        held = conn.execute(select(func.count()).where(col(Artifact.session_id) == session_id)).scalar_one()
        if held >= config.max_artifacts_per_session:
            raise limit_reached(
                "artifacts per session", config.max_artifacts_per_session, "SESSIONS_API_MAX_ARTIFACTS_PER_SESSION"
            )
        _reserve(conn=conn, organization_id=organization_id, size=declared.size)
        artifact_id = uuid.uuid4()
        key = object_key(organization_id, session_id, artifact_id)
        expires_at = now + timedelta(seconds=config.artifact_url_ttl_seconds)
        created_at = InstantAllocator(conn, col(Artifact.created_at), col(Artifact.session_id), session_id).next()
        conn.execute(
            insert(Artifact).values(
                id=artifact_id,
                organization_id=organization_id,
                session_id=session_id,
                type=declared.type,
                name=declared.name,
                content_type=declared.content_type,
                size=declared.size,
                sha256=declared.sha256,
                status=ArtifactStatus.pending,
                created_at=created_at,
                upload_expires_at=expires_at,
                uploaded_by=caller.user_id,
                object_key=key,
            )
        )
        row = _view(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
        audit.record(conn=conn, events=[_audited(caller, AuditEventType.artifact_created, row)])
    upload = store().upload(
        key,
        size=declared.size,
        sha256=declared.sha256,
        content_type=declared.content_type,
        expires_at=expires_at,
        holder=grant_ends.holder_of(caller),
    )
    return Created(row, upload)


def _lock_open_session(*, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> None:
    """Lock the session (its artifacts' writers take turns on it); Conflict when it ended more
    than 24 hours ago."""
    session = conn.execute(
        select(col(SessionRecord.released_at), col(SessionRecord.expires_at))
        .where(col(SessionRecord.id) == session_id, col(SessionRecord.organization_id) == organization_id)
        .with_for_update()
    ).first()
    if session is None:
        raise NotFound(_NO_SESSION)
    ended = session.released_at if session.released_at is not None else min(session.expires_at, now)
    if ended < now - ARTIFACT_WINDOW:
        raise Conflict(
            "artifact_window_closed",
            "The session ended more than 24 hours ago; artifacts can no longer be added to it.",
        )


def _reserve(*, conn: Connection, organization_id: uuid.UUID, size: int) -> None:
    """Count `size` more bytes against the organization's plan, in one statement (no two
    uploads both take the last bytes); Conflict `storage_quota_exceeded` past it."""
    most = plans.max_storage_bytes_column()
    reserved = conn.execute(
        update(Organization)
        .where(col(Organization.id) == organization_id, col(Organization.stored_bytes) + size <= most)
        .values(stored_bytes=col(Organization.stored_bytes) + size)
        .returning(col(Organization.stored_bytes))
    ).first()
    if reserved is None:
        used, limit = conn.execute(
            select(col(Organization.stored_bytes), most).where(col(Organization.id) == organization_id)
        ).one()
        raise Conflict(
            "storage_quota_exceeded",
            f"The organization's artifacts hold {used} of the {limit} bytes its plan allows; "
            f"{size} more would pass it. Delete artifacts, or ask the operator for a larger plan.",
        )


def _release_bytes(*, conn: Connection, organization_id: uuid.UUID, size: int) -> None:
    conn.execute(
        update(Organization)
        .where(col(Organization.id) == organization_id)
        .values(stored_bytes=col(Organization.stored_bytes) - size)
    )


def _count_available(*, conn: Connection, session_id: uuid.UUID, change: int) -> None:
    conn.execute(
        update(SessionRecord)
        .where(col(SessionRecord.id) == session_id)
        .values(artifact_count=col(SessionRecord.artifact_count) + change)
    )


def complete_artifact(caller: Principal, session_id: uuid.UUID, artifact_id: uuid.UUID) -> Row[Any]:
    """Make a pending artifact available once the store holds exactly its declared bytes (an
    available one is answered as it is). Unprocessable `checksum_mismatch` when the bytes are
    others: the artifact `failed`, its object deleted. Conflict `upload_incomplete` when no
    bytes are there yet, `artifact_not_pending` when it failed or expired."""
    organization_id = caller.organization_id
    with db.reading() as conn:
        row = _view(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
    if row.status == ArtifactStatus.available:
        return row
    _refuse_unless_pending(row)
    objects = store()
    stored = objects.head(row.object_key)
    if stored is None:
        raise Conflict(
            "upload_incomplete",
            "The store holds no bytes of this artifact yet: PUT them to its upload URL, then complete it.",
        )
    # Every store we know reports the SHA-256 an upload carried; for one that does not, read it through.
    sha256 = stored.sha256 if stored.sha256 is not None else objects.digest(row.object_key)
    intact = stored.size == row.size and sha256 == row.sha256
    with db.writing() as conn:
        current = _locked(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
        if current.status == ArtifactStatus.available:
            return _view(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
        _refuse_unless_pending(current)
        if intact:
            _make_available(conn=conn, artifact=current, organization_id=organization_id)
            return _view(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
        _fail(conn=conn, artifact=current)
    delete_quietly(row.object_key)
    raise Unprocessable(
        "checksum_mismatch",
        f"The store holds {stored.size} bytes with SHA-256 {sha256}, not the {row.size} bytes with SHA-256 "
        f"{row.sha256} declared; the artifact failed and its bytes were deleted. Create a new artifact to try again.",
    )


def _refuse_unless_pending(row: Any) -> None:
    if row.status != ArtifactStatus.pending:
        raise Conflict(
            "artifact_not_pending",
            f"The artifact is {row.status}: only a pending artifact can be completed. Create a new one.",
        )


def _make_available(*, conn: Connection, artifact: Any, organization_id: uuid.UUID) -> None:
    now = utcnow()
    retention = plans.plan_of(conn=conn, organization_id=organization_id).artifact_retention_days
    conn.execute(
        update(Artifact)
        .where(col(Artifact.id) == artifact.id)
        .values(status=ArtifactStatus.available, available_at=now, retain_until=now + timedelta(days=retention))
    )
    _count_available(conn=conn, session_id=artifact.session_id, change=1)
    row = _view(conn=conn, organization_id=organization_id, session_id=artifact.session_id, artifact_id=artifact.id)
    event = webhooks.Document(
        organization_id, AVAILABLE_EVENT, format_utc(now), artifact_document(row), artifact.session_id
    )
    webhooks.enqueue_documents(conn=conn, events=[event])


def _fail(*, conn: Connection, artifact: Any) -> None:
    conn.execute(update(Artifact).where(col(Artifact.id) == artifact.id).values(status=ArtifactStatus.failed))
    _release_bytes(conn=conn, organization_id=artifact.organization_id, size=artifact.size)


def get_artifact(caller: Principal, session_id: uuid.UUID, artifact_id: uuid.UUID) -> tuple[Row[Any], Download | None]:
    """An artifact of a session of the caller's organization, with a download URL (given to
    the caller) when it is available."""
    organization_id = caller.organization_id
    with db.reading() as conn:
        row = _view(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
    if row.status != ArtifactStatus.available:
        return row, None
    expires_at = utcnow() + timedelta(seconds=settings.current().artifact_url_ttl_seconds)
    download = store().download(
        row.object_key,
        name=row.name,
        content_type=row.content_type,
        expires_at=expires_at,
        holder=grant_ends.holder_of(caller),
    )
    return row, download


def list_artifacts(
    organization_id: uuid.UUID, session_id: uuid.UUID, limit: int, before: datetime | None, type: str | None
) -> Page:
    """A page of a session's artifacts, newest first; NotFound for a session not of the organization."""
    where = [col(Artifact.session_id) == session_id]
    if type is not None:
        where.append(col(Artifact.type) == type)
    with db.reading() as conn:
        _session_exists(conn=conn, organization_id=organization_id, session_id=session_id)
        return read_page(_ARTIFACT_VIEW, col(Artifact.created_at), limit, before, *where, conn=conn)


def delete_artifact(caller: Principal, session_id: uuid.UUID, artifact_id: uuid.UUID) -> None:
    """Delete an artifact of any status, and then its object (audited)."""
    organization_id = caller.organization_id
    with db.writing() as conn:
        current = _locked(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
        row = _view(conn=conn, organization_id=organization_id, session_id=session_id, artifact_id=artifact_id)
        if current.status == ArtifactStatus.available:
            _count_available(conn=conn, session_id=session_id, change=-1)
        if current.status in (ArtifactStatus.available, ArtifactStatus.pending):
            _release_bytes(conn=conn, organization_id=organization_id, size=current.size)
        conn.execute(delete_rows(Artifact).where(col(Artifact.id) == artifact_id))
        audit.record(conn=conn, events=[_audited(caller, AuditEventType.artifact_deleted, row)])
    delete_quietly(current.object_key)


def delete_quietly(key: str) -> None:
    """Delete an object whose row already let it go; a store that does not answer leaves an
    orphan, which the orphan sweep deletes later (models.artifacts.retention)."""
    try:
        store().delete(key)
    except StoreUnavailable:
        logger.warning("could not delete the object %s; the orphan sweep will", key, exc_info=True)


def _session_exists(*, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID) -> None:
    found = conn.execute(
        select(col(SessionRecord.id)).where(
            col(SessionRecord.id) == session_id, col(SessionRecord.organization_id) == organization_id
        )
    ).first()
    if found is None:
        raise NotFound(_NO_SESSION)


_ONE_ARTIFACT = _ARTIFACT_VIEW.where(
    col(Artifact.id) == bindparam("artifact_id"),
    col(Artifact.session_id) == bindparam("session_id"),
    col(Artifact.organization_id) == bindparam("organization_id"),
)


def _view(*, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID, artifact_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(
        _ONE_ARTIFACT, {"artifact_id": artifact_id, "session_id": session_id, "organization_id": organization_id}
    ).first()
    if row is None:
        raise NotFound(_NO_ARTIFACT)
    return row


def _locked(*, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID, artifact_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(
        select(*_LOCKED_COLUMNS)
        .where(
            col(Artifact.id) == artifact_id,
            col(Artifact.session_id) == session_id,
            col(Artifact.organization_id) == organization_id,
        )
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(_NO_ARTIFACT)
    return row


def _audited(caller: Principal, kind: AuditEventType, row: Row[Any]) -> audit.Event:
    """An artifact's creation or deletion as the audit log records it: what it was."""
    snapshot = {"session": row.session_id, "type": row.type, "name": row.name, "size": row.size, "sha256": row.sha256}
    created = kind is AuditEventType.artifact_created
    return audit.Event(
        caller.organization_id,
        kind,
        caller.actor,
        audit.TargetKind.artifact,
        uuid.UUID(row.id),
        before=None if created else snapshot,
        after=snapshot if created else None,
    )
