"""What callers say of a session: its name, build, tags, metadata and result.

Given at createSession (its `facts`) and changed by updateSession. The spec checks their
shapes; this module holds the rules a schema cannot: names under the names rule, metadata at
most 4 KiB as JSON, and a result set only while the session is live or up to 24 hours after
it ended. A change is recorded in the audit log and sent to webhooks (`session.updated`) in
its transaction; a change that changes nothing records and sends nothing.

Tags are stored twice: as JSON on the session (what it shows) and one row each in
`session_tags`, keyed by the session's organization and `created_at` (what a tag's page walks).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit, webhooks
from sessions_api.models.api_keys import Principal
from sessions_api.models.errors import Conflict, InvalidInput, NotFound
from sessions_api.models.sessions import session_view
from sessions_api.models.tables import AuditEventType, SessionRecord, SessionTag
from sessions_api.models.text import clean_name, is_free_text

RESULT_WINDOW = timedelta(hours=24)
MAX_METADATA_BYTES = 4096
MAX_LABEL = 255
# A fact's API name, and its column on the session.
COLUMNS = {
    "name": "name",
    "build": "build",
    "tags": "tags",
    "metadata": "metadata_json",
    "result": "result",
    "resultReason": "result_reason",
}
_RESULT_FACTS = ("result", "resultReason")
RESULTS = (None, "passed", "failed", "error")
TAG = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_TAGS = 20
MAX_RESULT_REASON = 1000


def stored(given: Mapping[str, Any]) -> dict[str, Any]:
    """The column values of the facts `given` (API names, as the spec validated them): names
    cleaned, tags and metadata as JSON text. InvalidInput for what the spec cannot check."""
    values: dict[str, Any] = {}
    for fact, value in given.items():
        if fact in ("name", "build") and value is not None:
            value = clean_name(value, f"session's {fact}", max_length=MAX_LABEL)
        elif fact == "tags":
            value = orjson.dumps(list(value or [])).decode()
        elif fact == "metadata":
            _refuse_unreadable_keys(value or {})
            value = orjson.dumps(dict(value or {})).decode()
            if len(value.encode()) > MAX_METADATA_BYTES:
                raise InvalidInput(f"the session's metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
        values[COLUMNS[fact]] = value
    return values


def _refuse_unreadable_keys(metadata: Mapping[str, Any]) -> None:
    """Metadata keys are one-line free text (the spec's patterns check the values; OpenAPI 3.0
    has no way to check an object's keys)."""
    for key in metadata:
        if not is_free_text(key, multiline=False):
            raise InvalidInput("metadata keys may hold no control characters and no bidirectional controls")


def tags_of(given: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(given.get("tags") or ())


def checked(given: Mapping[str, Any]) -> dict[str, Any]:
    """The facts `given` by a source the spec does not check (an import's line), checked as the
    spec checks a request's: InvalidInput naming the first fact that is not as it says."""
    for fact, value in given.items():
        if fact in ("name", "build", "resultReason"):
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"'{fact}' must be a string or null")
            if fact == "resultReason" and value is not None and len(value) > MAX_RESULT_REASON:
                raise InvalidInput(f"'resultReason' must have at most {MAX_RESULT_REASON} characters")
        elif fact == "tags":
            if not isinstance(value, list) or len(value) > MAX_TAGS or len(set(map(str, value))) != len(value):
                raise InvalidInput(f"'tags' must be a list of at most {MAX_TAGS} distinct tags")
            if not all(isinstance(tag, str) and TAG.fullmatch(tag) for tag in value):
                raise InvalidInput("each tag must have 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        elif fact == "metadata":
            if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
                raise InvalidInput("'metadata' must be an object whose values are strings")
        elif fact == "result":
            if value not in RESULTS:
                raise InvalidInput("'result' must be passed, failed, error or null")
    return dict(given)


def update_session(caller: Principal, session_id: uuid.UUID, given: Mapping[str, Any]) -> Row[Any]:
    """Set the facts `given` on a session of the caller's organization; the session as changed.
    Conflict (`result_window_closed`) for a result more than 24 hours after it ended."""
    organization_id = caller.organization_id
    values = stored(given)
    with db.writing() as conn:
        current = _locked(conn=conn, organization_id=organization_id, session_id=session_id)
        now = utcnow()
        if any(fact in given for fact in _RESULT_FACTS) and current.released_at is not None:
            if current.released_at < now - RESULT_WINDOW:
                raise Conflict(
                    "result_window_closed",
                    "The session ended more than 24 hours ago; its result can no longer change.",
                )
        changed = {column: value for column, value in values.items() if getattr(current, column) != value}
        if changed:
            conn.execute(update(SessionRecord).where(col(SessionRecord.id) == session_id).values(**changed))
            if "tags" in changed:
                _replace_tags(
                    conn=conn,
                    organization_id=organization_id,
                    session_id=session_id,
                    current=current,
                    tags=tags_of(given),
                )
            event = audit.Event(
                organization_id,
                AuditEventType.session_updated,
                caller.actor,
                audit.TargetKind.session,
                session_id,
                before={fact: _shown(fact, getattr(current, COLUMNS[fact])) for fact in _facts_of(changed)},
                after={fact: _shown(fact, changed[COLUMNS[fact]]) for fact in _facts_of(changed)},
            )
            webhooks.enqueue(conn=conn, changes=[event])  # before the audit turns: see leases._lease
            audit.record(conn=conn, events=[event])
        return session_view(conn=conn, organization_id=organization_id, session_id=session_id)


def _locked(*, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID) -> Row[Any]:
    """The session's stored facts, locked against another change until the commit."""
    columns = [col(getattr(SessionRecord, column)) for column in COLUMNS.values()]
    row = conn.execute(
        select(col(SessionRecord.created_at), col(SessionRecord.released_at), *columns)
        .where(col(SessionRecord.id) == session_id, col(SessionRecord.organization_id) == organization_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound("No session with this id exists in the selected organization.")
    return row


def _replace_tags(
    *, conn: Connection, organization_id: uuid.UUID, session_id: uuid.UUID, current: Row[Any], tags: tuple[str, ...]
) -> None:
    """The session's rows of `session_tags`: exactly `tags`."""
    conn.execute(delete(SessionTag).where(col(SessionTag.session_id) == session_id))
    if tags:
        conn.execute(
            insert(SessionTag),
            [
                {
                    "organization_id": organization_id,
                    "tag": tag,
                    "created_at": current.created_at,
                    "session_id": session_id,
                }
                for tag in tags
            ],
        )


def _facts_of(changed: Mapping[str, Any]) -> list[str]:
    return [fact for fact, column in COLUMNS.items() if column in changed]


def _shown(fact: str, value: Any) -> Any:
    """A stored fact as the API shows it (tags and metadata are JSON text in the table)."""
    if fact in ("tags", "metadata") and isinstance(value, str):
        return orjson.loads(value)
    return value
