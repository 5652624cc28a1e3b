"""The audit log: who changed what in an organization, when, and from which API key.

Every function that changes something an organization's admins may want to trace records its
events with `record`, on the connection of the change: the event commits or rolls back with
the change, so no change is ever without its event, and none is recorded twice.

Each event belongs to one organization: the one the change happened in (a key bound to no
organization belongs to its user's Personal organization). Events are listed newest first
with the exact cursor of sessions: `created_at` is unique within an organization, and a new
event is always newer than every event already committed there.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, select
from sqlmodel import col

from sessions_api.core.prepared import insert_rows
from sessions_api.core.timestamps import format_utc
from sessions_api.models import events as event_log
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.instants import in_organization_turns
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import AuditEvent, AuditEventType, Origin


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user with one of their API keys (`api`), the operator at the
    command line (`cli`: no user, no key), or the server itself (`system`, e.g. an expiry)."""

    origin: Origin
    user_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None


OPERATOR = Actor(Origin.cli)
SYSTEM = Actor(Origin.system)


class TargetKind(enum.StrEnum):
    """What an event is about; its `target.id` is that thing's id (a member's is their user id)."""

    api_key = "api_key"
    member = "member"
    organization = "organization"
    session = "session"
    webhook_endpoint = "webhook_endpoint"
    invitation = "invitation"
    session_request = "session_request"
    artifact = "artifact"


Value = uuid.UUID | datetime | str | bool | int | float | list[str] | dict[str, str] | None
Snapshot = Mapping[str, Value]


@dataclass(frozen=True)
class Event:
    organization_id: uuid.UUID
    type: AuditEventType
    actor: Actor
    target_kind: TargetKind
    target_id: uuid.UUID
    # What the change touched, in the API's names: before and after it, where each applies.
    before: Snapshot | None = None
    after: Snapshot | None = None


def record(*, conn: Connection, events: Iterable[Event]) -> None:
    """Record `events` in the transaction of `conn`, each organization's in the given order.

    Record once the change is made: a writer then takes the organizations' audit turns (see
    models.instants.take_turns) after every other lock it needs, and waits for nothing while
    it holds them, so writers never wait for each other in a circle. Events of several
    organizations are recorded in one call, whose turns are taken in one order.
    """
    events = list(events)
    if not events:
        return
    placed = in_organization_turns(
        conn=conn,
        column=col(AuditEvent.created_at),
        organization_column=col(AuditEvent.organization_id),
        items=events,
        organization_of=lambda event: event.organization_id,
    )
    insert_rows(conn, AuditEvent, [_row(event, instant) for event, instant in placed])
    event_log.append(conn=conn, events=[_logged(event) for event in events if event.type in LOGGED])


# The audit log's changes the event log also holds (session events come with their documents,
# from models.webhooks): who joined, left or changed role, keys, webhook endpoints, artifacts.
LOGGED = frozenset(
    {
        AuditEventType.member_added,
        AuditEventType.member_role_changed,
        AuditEventType.member_removed,
        AuditEventType.key_created,
        AuditEventType.key_revoked,
        AuditEventType.webhook_endpoint_created,
        AuditEventType.webhook_endpoint_updated,
        AuditEventType.webhook_endpoint_deleted,
        AuditEventType.webhook_endpoint_secret_rotated,
        AuditEventType.webhook_endpoint_disabled,
        AuditEventType.artifact_created,
        AuditEventType.artifact_deleted,
    }
)


def _logged(event: Event) -> event_log.NewEvent:
    """A change as the event log shows it: its target and what it touched."""
    data: dict[str, Any] = {"target": {"kind": event.target_kind.value, "id": str(event.target_id)}}
    data |= {name: _json(snapshot) for name, snapshot in (("before", event.before), ("after", event.after)) if snapshot}
    session = (event.after or event.before or {}).get("session") if event.target_kind is TargetKind.artifact else None
    return event_log.NewEvent(
        event.organization_id, event.type.value, data, uuid.UUID(str(session)) if session else None
    )


def _row(event: Event, created_at: datetime) -> dict[str, Any]:
    data = {name: _json(snapshot) for name, snapshot in (("before", event.before), ("after", event.after)) if snapshot}
    return {
        "id": uuid.uuid4(),
        "organization_id": event.organization_id,
        "created_at": created_at,
        "type": event.type,
        "origin": event.actor.origin,
        "actor_user_id": event.actor.user_id,
        "actor_key_id": event.actor.key_id,
        "target_kind": event.target_kind.value,
        "target_id": event.target_id,
        "data": data,
    }


def _json(snapshot: Snapshot) -> dict[str, str | bool | int | float | list[str] | dict[str, str] | None]:
    """A snapshot as the API shows it: ids and instants as their text; flags, numbers, lists and
    objects (a session's metadata) as they are."""
    return {name: _json_value(value) for name, value in snapshot.items()}


def _json_value(value: Value) -> str | bool | int | float | list[str] | dict[str, str] | None:
    if isinstance(value, datetime):
        return format_utc(value)
    if value is None or isinstance(value, bool | int | float | list | dict):
        return value
    return str(value)


@dataclass(frozen=True)
class EventFilters:
    type: AuditEventType | None = None
    actor_user_id: uuid.UUID | None = None


# What the API answers with, ids and instants already its text (see models.as_text).
_EVENT_VIEW: Select[Any] = select(
    uuid_text(col(AuditEvent.id)).label("id"),
    uuid_text(col(AuditEvent.organization_id)).label("organization_id"),
    rfc3339_text(col(AuditEvent.created_at)).label("created_at"),
    col(AuditEvent.type),
    col(AuditEvent.origin),
    uuid_text(col(AuditEvent.actor_user_id)).label("actor_user_id"),
    uuid_text(col(AuditEvent.actor_key_id)).label("actor_key_id"),
    col(AuditEvent.target_kind),
    uuid_text(col(AuditEvent.target_id)).label("target_id"),
    col(AuditEvent.data),
)


def list_page(
    organization_id: uuid.UUID, limit: int, before: datetime | None, filters: EventFilters = EventFilters()
) -> Page:
    """Up to `limit` events of the organization recorded strictly before `before`, newest first."""
    where = [col(AuditEvent.organization_id) == organization_id]
    if filters.type is not None:
        where.append(col(AuditEvent.type) == filters.type)
    if filters.actor_user_id is not None:
        where.append(col(AuditEvent.actor_user_id) == filters.actor_user_id)
    return read_page(_EVENT_VIEW, col(AuditEvent.created_at), limit, before, *where)
