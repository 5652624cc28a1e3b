"""session queue: starts that wait for a device, and the queue in each organization's plan

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 18:00:00.000000

`session_requests` holds the starts that wait (models.queue); `organizations.max_queued_sessions`
is the operator's queue size for one organization (NULL: the default of its kind).
"""

from alembic import op
import sqlalchemy as sa

import sqlmodel

from sessions_api.models.types import UTCDateTime


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("max_queued_sessions", sa.Integer(), nullable=True))
    op.create_table(
        "session_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deadline", UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("ended_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("os_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("max_duration_minutes", sa.Integer(), nullable=True),
        sa.Column("facts", sa.Text(), server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name="fk_session_requests_organization_id_organizations"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_session_requests_user_id_users"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name="fk_session_requests_key_id_api_keys"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_session_requests_session_id_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_session_requests"),
        sa.UniqueConstraint("organization_id", "created_at", name="uq_session_requests_organization_created_at"),
    )
    op.create_index(
        "ix_session_requests_organization_status_created_at",
        "session_requests",
        ["organization_id", "status", "created_at"],
    )
    op.create_index(
        "ix_session_requests_queued_created_at",
        "session_requests",
        ["created_at"],
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_table("session_requests")
    op.execute("ALTER TABLE organizations DROP COLUMN max_queued_sessions")
