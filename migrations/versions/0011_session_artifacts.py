"""session artifacts: files a session produced, kept in an object store

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:00:00.000000

`artifacts` holds each artifact's record (its bytes are in the object store under
`object_key`); `sessions.artifact_count` counts a session's available ones and
`organizations.stored_bytes` the bytes an organization's artifacts hold, both kept in the
artifacts' own transactions. `organizations.max_storage_bytes` and
`organizations.artifact_retention_days` are the operator's plan (NULL: the default).
"""

from alembic import op
import sqlalchemy as sa

import sqlmodel

from sessions_api.models.types import UTCDateTime


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True))
    op.add_column("organizations", sa.Column("artifact_retention_days", sa.Float(), nullable=True))
    op.add_column("organizations", sa.Column("stored_bytes", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("sessions", sa.Column("artifact_count", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("available_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("retain_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("upload_expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=False),
        sa.Column("object_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name="fk_artifacts_organization_id_organizations"
        ),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_artifacts_session_id_sessions"),
        sa.ForeignKeyConstraint(["uploaded_by"], ["users.id"], name="fk_artifacts_uploaded_by_users"),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("session_id", "created_at", name="uq_artifacts_session_created_at"),
        sa.CheckConstraint("size >= 0", name=op.f("ck_artifacts_size_not_negative")),
    )
    op.create_index("ix_artifacts_session_type_created_at", "artifacts", ["session_id", "type", "created_at"])
    op.create_index(
        "ix_artifacts_available_retain_until",
        "artifacts",
        ["retain_until"],
        sqlite_where=sa.text("status = 'available'"),
        postgresql_where=sa.text("status = 'available'"),
    )
    op.create_index(
        "ix_artifacts_pending_upload_expires_at",
        "artifacts",
        ["upload_expires_at"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_artifacts_organization_available_at", "artifacts", ["organization_id", "available_at"])


def downgrade() -> None:
    op.drop_table("artifacts")
    # Not batch mode: SQLite would copy tables others reference (it drops columns since 3.35).
    op.execute("ALTER TABLE sessions DROP COLUMN artifact_count")
    for column in ("stored_bytes", "artifact_retention_days", "max_storage_bytes"):
        op.execute(f"ALTER TABLE organizations DROP COLUMN {column}")
