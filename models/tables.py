"""The tables. Ids are UUIDs; every timestamp is an aware UTC datetime (see UTCDateTime)."""

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Enum,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from sessions_api.core.timestamps import utcnow
from sessions_api.models.types import UTCDateTime

# Deterministic constraint names, so that migrations can refer to them on every database.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Role(enum.StrEnum):
    admin = "admin"
    readwrite = "readwrite"
    readonly = "readonly"


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    # A user's Personal organization, made with the user; it is their default.
    personal: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Who created it through the API (None: the operator, or a Personal organization): what
    # SESSIONS_API_MAX_ORGANIZATIONS_PER_USER counts. A user id, kept without a foreign key
    # (added to a table others reference, which SQLite could only do by copying it).
    created_by_user_id: uuid.UUID | None = Field(default=None, index=True)
    # The longest any of its ended sessions lasted, in whole seconds (rounded up), raised in the
    # transaction that ends (or imports) one: a usage report reads the sessions started this
    # long before its range, and the live ones (models.usage).
    longest_session_seconds: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    # Its plan, as the operator set it; None: the default plan of its kind (models.plans).
    max_live_sessions: int | None = Field(default=None)
    max_queued_sessions: int | None = Field(default=None)
    max_storage_bytes: int | None = Field(default=None, sa_type=BigInteger)
    artifact_retention_days: float | None = Field(default=None)
    # The bytes its artifacts hold: available ones, and pending uploads at their declared size,
    # changed in each artifact's own transactions (models.artifacts) so that a quota check
    # reads one row.
    stored_bytes: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str | None = Field(default=None, max_length=200)
    default_organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Membership(SQLModel, table=True):
    """A user's role in an organization. `created_at` is unique within the organization: it is
    the paging cursor of the organization's members."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organization_id", "created_at"),)

    organization_id: uuid.UUID = Field(foreign_key="organizations.id", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, index=True)
    role: Role = Field(sa_column=Column(Enum(Role, name="role", native_enum=False, length=16), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InvitationStatus(enum.StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    revoked = "revoked"
    # Never stored: a pending invitation past its expiresAt reads as expired.
    expired = "expired"


class Invitation(SQLModel, table=True):
    """An admin's invitation of an email address to an organization, with a role; the invitee
    (the account with that email) accepts or declines it. `created_at` is unique within the
    organization: the paging cursor of its invitations."""

    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("organization_id", "created_at"),
        # The invitee's own list: their address's invitations, newest first.
        Index("ix_invitations_email_created_at", "email", "created_at"),
        # An organization's pending invitations not yet expired: what its cap counts.
        Index(
            "ix_invitations_pending_organization_expires_at",
            "organization_id",
            "expires_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    email: str = Field(max_length=320)
    role: Role = Field(sa_column=Column(Enum(Role, name="role", native_enum=False, length=16), nullable=False))
    status: str = Field(max_length=16)
    invited_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKey(SQLModel, table=True):
    """An API key. The secret is never stored: only its SHA-256, found by the key's lookup id.
    `created_at` is unique: it is the paging cursor of a user's and an organization's keys."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # What the two key lists walk, newest first.
        Index("ix_api_keys_user_id_created_at", "user_id", "created_at"),
        Index("ix_api_keys_organization_id_created_at", "organization_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lookup_id: str = Field(max_length=32, unique=True)
    secret_hash: str = Field(max_length=64)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    # A bound key acts on this organization only, and only while its user is a member of it.
    organization_id: uuid.UUID | None = Field(default=None, foreign_key="organizations.id")
    name: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, unique=True)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # From this instant on the key fails like a revoked one; None: it does not expire.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Platform(enum.StrEnum):
    ios = "ios"
    android = "android"


class Device(SQLModel, table=True):
    """A device of the fleet. `created_at` is unique: it is the paging cursor of the fleet."""

    __tablename__ = "devices"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    platform: str = Field(max_length=32)
    type: str = Field(max_length=32)
    name: str = Field(max_length=200)
    os_version: str = Field(max_length=64)
    # Disabled by an operator: shown as offline and never leased.
    disabled: bool = Field(default=False)
    created_at: datetime = Field(sa_type=UTCDateTime, unique=True)


class SessionRecord(SQLModel, table=True):
    """A session. `created_at` is unique within an organization: it is the paging cursor, and
    the unique index on (organization_id, created_at) is also the index the page query reads."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("organization_id", "created_at", name="uq_sessions_organization_created_at"),
        CheckConstraint("released_at IS NULL OR released_at >= created_at", name="released_after_created"),
        CheckConstraint("expires_at >= created_at", name="expires_after_created"),
        Index("ix_sessions_device_id", "device_id"),
        Index("ix_sessions_user_id", "user_id"),
        # One keyset index per filter of listSessions, and per pair a page may combine, each
        # ending in created_at: a page reads `limit + 1` entries of it, whatever the history.
        # (Live sessions have their own, partial: there are never more than the fleet's devices.)
        Index("ix_sessions_organization_user_created_at", "organization_id", "user_id", "created_at"),
        Index("ix_sessions_organization_device_created_at", "organization_id", "device_id", "created_at"),
        Index("ix_sessions_organization_platform_created_at", "organization_id", "platform", "created_at"),
        Index(
            "ix_sessions_organization_user_platform_created_at", "organization_id", "user_id", "platform", "created_at"
        ),
        Index(
            "ix_sessions_organization_user_device_created_at", "organization_id", "user_id", "device_id", "created_at"
        ),
        # A build's sessions, its failures (tags have their own table: SessionTag).
        Index("ix_sessions_organization_build_created_at", "organization_id", "build", "created_at"),
        Index("ix_sessions_organization_result_created_at", "organization_id", "result", "created_at"),
        Index("ix_sessions_organization_build_result_created_at", "organization_id", "build", "result", "created_at"),
        Index(
            "ix_sessions_live_organization_created_at",
            "organization_id",
            "created_at",
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        # A device has at most one live session: the database says so, whatever the writers.
        Index(
            "uq_sessions_live_device_id",
            "device_id",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        # What the expiry sweep reads: live sessions by expiry.
        Index(
            "ix_sessions_live_expires_at",
            "expires_at",
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    user_id: uuid.UUID = Field(foreign_key="users.id")
    device_id: uuid.UUID = Field(foreign_key="devices.id")
    # The device's platform, copied when the session starts (a device never changes platform),
    # so that a page of one platform's sessions is read from an index of sessions alone.
    platform: str = Field(max_length=32)
    created_at: datetime = Field(sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The latest a session lasts: a live session is released at this instant.
    expires_at: datetime = Field(sa_type=UTCDateTime)
    # What its callers say of it (models.session_facts): tags and metadata as JSON text.
    name: str | None = Field(default=None, max_length=255)
    build: str | None = Field(default=None, max_length=255)
    tags: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    metadata_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    result: str | None = Field(default=None, max_length=16)
    result_reason: str | None = Field(default=None, max_length=1000)
    # Its available artifacts, kept in each artifact's own transactions: a page stays one read.
    artifact_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class ArtifactStatus(enum.StrEnum):
    pending = "pending"
    available = "available"
    failed = "failed"
    expired = "expired"


class Artifact(SQLModel, table=True):
    """A file a session produced (models.artifacts), its bytes in the object store under
    `object_key`. `created_at` is unique within the session: its list's paging cursor."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("session_id", "created_at", name="uq_artifacts_session_created_at"),
        Index("ix_artifacts_session_type_created_at", "session_id", "type", "created_at"),
        # What the retention sweep reads: available artifacts by the end of their retention.
        Index(
            "ix_artifacts_available_retain_until",
            "retain_until",
            sqlite_where=text("status = 'available'"),
            postgresql_where=text("status = 'available'"),
        ),
        # What the sweep of abandoned uploads reads: pending ones by their URL's expiry.
        Index(
            "ix_artifacts_pending_upload_expires_at",
            "upload_expires_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # A usage report's artifact bytes: an organization's by the instant they became available.
        Index("ix_artifacts_organization_available_at", "organization_id", "available_at"),
        CheckConstraint("size >= 0", name="size_not_negative"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    session_id: uuid.UUID = Field(foreign_key="sessions.id")
    type: str = Field(max_length=32)
    name: str = Field(max_length=200)
    content_type: str = Field(max_length=255)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    status: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    available_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retain_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    upload_expires_at: datetime = Field(sa_type=UTCDateTime)
    uploaded_by: uuid.UUID = Field(foreign_key="users.id")
    object_key: str = Field(max_length=255)


class EventRecord(SQLModel, table=True):
    """One event of an organization's log (models.events), written once, in the transaction of
    the change that caused it, under the organization's audit turn: `created_at` is unique
    within the organization and follows its commit order, so it is the event's id and cursor."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("organization_id", "created_at", name="uq_events_organization_created_at"),
        # listEvents' keysets: what every member may read, one category (`session.*`), one type,
        # one session; and the retention sweep's, oldest first across organizations.
        Index("ix_events_organization_admins_only_created_at", "organization_id", "admins_only", "created_at"),
        Index("ix_events_organization_category_created_at", "organization_id", "category", "created_at"),
        Index("ix_events_organization_type_created_at", "organization_id", "type", "created_at"),
        Index("ix_events_organization_session_created_at", "organization_id", "session_id", "created_at"),
        Index("ix_events_created_at", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    type: str = Field(max_length=40)
    # What comes before the type's dot (`session`): one keyset reads a whole category.
    category: str = Field(max_length=24)
    # Only the organization's admins read it (member.*, key.*, webhook_endpoint.*).
    admins_only: bool = Field(default=False)
    # The session it is about, where there is one (its filter).
    session_id: uuid.UUID | None = Field(default=None)
    # The event's `data`, as JSON text, exactly as the API shows it.
    data: str = Field(sa_column=Column(Text, nullable=False))
    # When what it reports happened (a session's start or end, an artifact's upload): the
    # `timestamp` its webhooks send. The log's own instant (`created_at`) is when it was written.
    occurred: datetime = Field(sa_type=UTCDateTime)


class SessionRequestStatus(enum.StrEnum):
    queued = "queued"
    started = "started"
    timed_out = "timed_out"
    cancelled = "cancelled"


class SessionRequest(SQLModel, table=True):
    """A start that waits in its organization's queue for a device (models.queue), with what it
    asked for. `created_at` (when it was queued) is unique within the organization: the order
    the queue serves and the paging cursor of its list."""

    __tablename__ = "session_requests"
    __table_args__ = (
        UniqueConstraint("organization_id", "created_at", name="uq_session_requests_organization_created_at"),
        Index("ix_session_requests_organization_status_created_at", "organization_id", "status", "created_at"),
        # A session's own request, if it waited in the queue (its stateHistory).
        Index("ix_session_requests_session_id", "session_id"),
        # What the queue's servers read: every organization's waiting requests, oldest first.
        Index(
            "ix_session_requests_queued_created_at",
            "created_at",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    user_id: uuid.UUID = Field(foreign_key="users.id")
    # Who asked, as the audit log names them: the API key it came with.
    key_id: uuid.UUID | None = Field(default=None, foreign_key="api_keys.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    deadline: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16)
    # Why it waits (or last waited): `concurrency` (the plan's limit) or `device` (none free).
    reason: str = Field(max_length=16)
    # When it left the queue (started, timed out or cancelled).
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Why a cancelled request was (models.queue.CancelReason); None for every other status.
    cancel_reason: str | None = Field(default=None, max_length=16)
    session_id: uuid.UUID | None = Field(default=None, foreign_key="sessions.id")
    # What it asks for (models.leases.DeviceWanted) and the session's facts, as JSON text.
    platform: str = Field(max_length=32)
    os_version: str | None = Field(default=None, max_length=64)
    type: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=200)
    max_duration_minutes: int | None = None
    facts: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))


class SessionTag(SQLModel, table=True):
    """One tag of one session, keyed as a page of a tag's sessions reads it: by organization,
    tag and the session's `created_at` (unique within the organization), newest first."""

    __tablename__ = "session_tags"
    __table_args__ = (Index("ix_session_tags_session_id", "session_id"),)

    organization_id: uuid.UUID = Field(foreign_key="organizations.id", primary_key=True)
    tag: str = Field(max_length=64, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="sessions.id")


class IdempotencyRecord(SQLModel, table=True):
    """The answer to a createSession request with an Idempotency-Key, kept for replay."""

    __tablename__ = "idempotency_keys"

    organization_id: uuid.UUID = Field(foreign_key="organizations.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    request_hash: str = Field(max_length=64)
    response_body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


def _stored_enum(values: type[enum.StrEnum], length: int) -> Enum:
    """A text column of an enum's values (`key.created`, not the member name `key_created`)."""
    return Enum(values, native_enum=False, length=length, values_callable=lambda members: [m.value for m in members])


class AuditEventType(enum.StrEnum):
    key_created = "key.created"
    key_revoked = "key.revoked"
    member_added = "member.added"
    member_role_changed = "member.role_changed"
    member_removed = "member.removed"
    organization_created = "organization.created"
    organization_renamed = "organization.renamed"
    organization_plan_changed = "organization.plan_changed"
    session_started = "session.started"
    session_released = "session.released"
    session_expired = "session.expired"
    session_updated = "session.updated"
    webhook_endpoint_created = "webhook_endpoint.created"
    webhook_endpoint_updated = "webhook_endpoint.updated"
    webhook_endpoint_deleted = "webhook_endpoint.deleted"
    webhook_endpoint_secret_rotated = "webhook_endpoint.secret_rotated"
    webhook_endpoint_disabled = "webhook_endpoint.disabled"
    invitation_revoked = "invitation.revoked"
    session_queue_cancelled = "session.queue_cancelled"
    artifact_created = "artifact.created"
    artifact_deleted = "artifact.deleted"


class Origin(enum.StrEnum):
    """Where a change came from: a request with an API key, the operator's command line, or
    the server itself (the expiry of sessions)."""

    api = "api"
    cli = "cli"
    system = "system"


class AuditEvent(SQLModel, table=True):
    """One change, recorded in the transaction that made it. `created_at` is unique within the
    organization: it is the paging cursor of the audit log."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("organization_id", "created_at"),
        # listAuditEvents' filters, alone and together, each a keyset ending in created_at.
        Index("ix_audit_events_organization_type_created_at", "organization_id", "type", "created_at"),
        Index("ix_audit_events_organization_actor_created_at", "organization_id", "actor_user_id", "created_at"),
        Index(
            "ix_audit_events_organization_actor_type_created_at",
            "organization_id",
            "actor_user_id",
            "type",
            "created_at",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    type: AuditEventType = Field(sa_column=Column(_stored_enum(AuditEventType, length=32), nullable=False))
    origin: Origin = Field(sa_column=Column(_stored_enum(Origin, length=16), nullable=False))
    # Both None for the command line and the system.
    actor_user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    actor_key_id: uuid.UUID | None = Field(default=None, foreign_key="api_keys.id")
    target_kind: str = Field(max_length=32)
    target_id: uuid.UUID
    # {"before": {...}, "after": {...}}, each where it applies.
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class WebhookEndpoint(SQLModel, table=True):
    """Where an organization wants its session events, signed with `secret` (Standard Webhooks'
    `whsec_` form; kept to sign with). After a rotation `previous_secret` also signs until
    `previous_secret_until`. `failing_since`: the first failed attempt since the last success.
    `created_at` is unique within the organization: it is the paging cursor of its endpoints."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("organization_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=500)
    # The event types it receives (a list of session.* names).
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = Field(default=True)
    # Sealed at rest when SESSIONS_API_SECRET_KEYS is set (`fernet:<token>`, core.sealing).
    secret: str = Field(max_length=512)
    previous_secret: str | None = Field(default=None, max_length=512)
    previous_secret_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one event for one endpoint, written in the transaction of the change it
    reports, and sent until an attempt succeeds or the retries run out. `event_id` (the
    `webhook-id` header, the same for every endpoint and attempt) is the event's row in the log
    (`events.id`), whose type, instant and data make the body every attempt sends; only a test
    event, which the log does not keep, carries its body in `payload`. No foreign key: the
    log's retention sweep deletes without reading the outbox, and an attempt whose event is
    gone fails with `event_expired` (models.webhook_delivery). A process that claims it sets
    `claimed_until`: until then no other process sends it, and if the claimer dies the claim
    simply runs out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # What the webhook senders read: pending deliveries by when they are due.
        Index(
            "ix_webhook_deliveries_pending_next_attempt_at",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_endpoint_id", "endpoint_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoints.id")
    event_id: uuid.UUID
    event_type: str = Field(max_length=32)
    payload: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status: DeliveryStatus = Field(
        sa_column=Column(_stored_enum(DeliveryStatus, length=16), nullable=False, server_default="pending")
    )
    attempts: int = Field(default=0)
    # No retry after this many attempts (a test event: 1).
    max_attempts: int
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    """One attempt to deliver, as the deliveries list shows it. `created_at` (when it was made)
    is unique within the endpoint: the list's paging cursor."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("endpoint_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoints.id")
    delivery_id: uuid.UUID = Field(foreign_key="webhook_deliveries.id", index=True)
    event_id: uuid.UUID
    event_type: str = Field(max_length=32)
    attempt: int
    succeeded: bool
    # The receiver's status, or None when no answer came (then `error` says why).
    response_status: int | None = None
    error: str | None = Field(default=None, max_length=300)
    duration_ms: int
    created_at: datetime = Field(sa_type=UTCDateTime)
