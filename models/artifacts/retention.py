"""What ends: artifacts past their retention, uploads never completed, objects without a row.

Each sweep changes its rows in one transaction and deletes their objects after it commits. It
takes at most BATCH rows, oldest first, and at most PER_ORGANIZATION of them from any one
organization: an organization with a backlog of millions drains at that pace, sweep after
sweep, while every other organization's due rows (up to BATCH / PER_ORGANIZATION organizations
with backlogs ahead of them) end in the same sweep. A process killed in between leaves
objects whose rows say `expired` or `failed`, which the orphan sweep removes (an object is an
orphan when no pending or available artifact names it). So no row is ever `available`
without its object.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.stores.files import FileStore
from sessions_api.core.timestamps import utcnow
from sessions_api.models.artifacts.records import delete_quietly
from sessions_api.models.artifacts.storage import artifact_of, store
from sessions_api.models.tables import Artifact, ArtifactStatus, Organization, SessionRecord

logger = logging.getLogger(__name__)
# Rows one sweep changes, and objects one orphan pass lists: each step's work is bounded.
BATCH = 500
# The most rows of one organization a sweep changes (see the module's docstring).
PER_ORGANIZATION = 50
# A temporary file of the file store this old belongs to an upload that stopped.
_STOPPED_UPLOAD = timedelta(hours=1)


def expire_artifacts(now: datetime | None = None) -> int:
    """Available artifacts past their `retainUntil` become `expired`, then their objects are
    deleted; how many."""
    now = now or utcnow()
    with db.writing() as conn:
        due = _due(
            conn=conn,
            where=(col(Artifact.status) == ArtifactStatus.available, col(Artifact.retain_until) <= now),
            order=col(Artifact.retain_until),
        )
        _end(conn=conn, rows=due, status=ArtifactStatus.expired)
        _count_away(conn=conn, rows=due)
    _delete_objects(due)
    return len(due)


def fail_abandoned_uploads(now: datetime | None = None) -> int:
    """Pending artifacts whose upload URL expired more than the grace ago become `failed`, their
    bytes freed and any late object deleted; how many."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.current().artifact_upload_grace_seconds)
    with db.writing() as conn:
        due = _due(
            conn=conn,
            where=(col(Artifact.status) == ArtifactStatus.pending, col(Artifact.upload_expires_at) <= cutoff),
            order=col(Artifact.upload_expires_at),
        )
        _end(conn=conn, rows=due, status=ArtifactStatus.failed)
    _delete_objects(due)
    return len(due)


def _due(*, conn: Connection, where: Sequence[Any], order: Any) -> list[Row[Any]]:
    """Up to BATCH due rows, oldest first, at most PER_ORGANIZATION of each organization: each
    read leaves out the organizations already at their share, so that one organization's
    backlog never fills the batch. Each read but the last fills an organization's share, so
    there are at most BATCH / PER_ORGANIZATION + 1."""
    taken: list[Row[Any]] = []
    per_organization: dict[Any, int] = {}
    full: set[Any] = set()
    while len(taken) < BATCH:
        wanted = BATCH - len(taken)
        query = (
            select(col(Artifact.id), col(Artifact.session_id), col(Artifact.organization_id), col(Artifact.size))
            .add_columns(col(Artifact.object_key))
            .where(*where, col(Artifact.organization_id).not_in(full), col(Artifact.id).not_in([r.id for r in taken]))
            .order_by(order)
            .limit(wanted)
            .with_for_update(skip_locked=True)  # another process's sweep takes the others
        )
        rows = conn.execute(query).all()
        for row in rows:
            if row.organization_id in full:  # reached its share in this read
                continue
            taken.append(row)
            per_organization[row.organization_id] = per_organization.get(row.organization_id, 0) + 1
            if per_organization[row.organization_id] >= PER_ORGANIZATION:
                full.add(row.organization_id)
        if len(rows) < wanted:  # nothing more is due outside the full organizations
            break
    return taken


def _end(*, conn: Connection, rows: Sequence[Row[Any]], status: ArtifactStatus) -> None:
    """End these artifacts (status), and give their bytes back to their organizations."""
    if not rows:
        return
    conn.execute(update(Artifact).where(col(Artifact.id).in_([row.id for row in rows])).values(status=status))
    freed: dict[Any, int] = {}
    for row in rows:
        freed[row.organization_id] = freed.get(row.organization_id, 0) + row.size
    for organization_id in sorted(freed, key=lambda id: id.bytes):  # one order of locks
        conn.execute(
            update(Organization)
            .where(col(Organization.id) == organization_id)
            .values(stored_bytes=col(Organization.stored_bytes) - freed[organization_id])
        )


def _count_away(*, conn: Connection, rows: Sequence[Row[Any]]) -> None:
    """Their sessions no longer count these available artifacts."""
    counts: dict[Any, int] = {}
    for row in rows:
        counts[row.session_id] = counts.get(row.session_id, 0) + 1
    for session_id in sorted(counts, key=lambda id: id.bytes):
        conn.execute(
            update(SessionRecord)
            .where(col(SessionRecord.id) == session_id)
            .values(artifact_count=col(SessionRecord.artifact_count) - counts[session_id])
        )


def _delete_objects(rows: Sequence[Row[Any]]) -> None:
    for row in rows:
        delete_quietly(row.object_key)


@dataclass(frozen=True)
class OrphanPass:
    listed: int
    removed: int
    # Where the next pass starts listing ("" once the whole store has been listed).
    after: str


def sweep_orphans(after: str = "", limit: int = BATCH) -> OrphanPass:
    """One bounded pass over the store from `after`: each listed object that no pending or
    available artifact names is deleted (a row is committed before its upload URL is given, so
    no object of a live artifact is ever without its row)."""
    objects = store()
    listed = objects.listing("", after=after, limit=limit)
    if not listed:
        return OrphanPass(0, 0, "")
    ids = {key.key: artifact_of(key.key) for key in listed}
    with db.reading() as conn:
        kept = {
            row.object_key
            for row in conn.execute(
                select(col(Artifact.object_key)).where(
                    col(Artifact.id).in_([id for id in ids.values() if id is not None]),
                    col(Artifact.status).in_([ArtifactStatus.pending, ArtifactStatus.available]),
                )
            )
        }
    orphans = [item.key for item in listed if item.key not in kept]
    for key in orphans:
        objects.delete(key)
    if isinstance(objects, FileStore):
        objects.sweep_incoming(_STOPPED_UPLOAD)
    return OrphanPass(len(listed), len(orphans), listed[-1].key if len(listed) == limit else "")
