"""The tables. Ids are UUIDs; every timestamp is an aware UTC datetime (see UTCDateTime)."""

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
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


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str | None = Field(default=None, max_length=200)
    default_organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"

    organization_id: uuid.UUID = Field(foreign_key="organizations.id", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, index=True)
    role: Role = Field(sa_column=Column(Enum(Role, name="role", native_enum=False, length=16), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ApiKey(SQLModel, table=True):
    """An API key. The secret is never stored: only its SHA-256, found by the key's lookup id."""

    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    lookup_id: str = Field(max_length=32, unique=True)
    secret_hash: str = Field(max_length=64)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    # A bound key acts on this organization only.
    organization_id: uuid.UUID | None = Field(default=None, foreign_key="organizations.id")
    name: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


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
    created_at: datetime = Field(sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The latest a session lasts: a live session is released at this instant.
    expires_at: datetime = Field(sa_type=UTCDateTime)


class IdempotencyRecord(SQLModel, table=True):
    """The answer to a createSession request with an Idempotency-Key, kept for replay."""

    __tablename__ = "idempotency_keys"

    organization_id: uuid.UUID = Field(foreign_key="organizations.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    request_hash: str = Field(max_length=64)
    response_body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
