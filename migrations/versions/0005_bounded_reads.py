"""bounded reads and caps: a keyset index per list filter, the device's platform on each
session, who created an organization, and room for sealed webhook secrets

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 20:00:00.000000

listSessions filtered by user, device, platform or status, and listAuditEvents by type or
actor, read every session (event) of the organization's history to fill a page. Each filter
and each pair a page may combine now has an index that ends in `created_at`. The platform a
session ran on is copied from its device (backfilled here), so that a page of one platform
is read from an index of sessions alone.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sessions_api.models.types


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LIVE = sa.text("released_at IS NULL")
SESSION_INDEXES = {
    "ix_sessions_organization_user_created_at": ["organization_id", "user_id", "created_at"],
    "ix_sessions_organization_device_created_at": ["organization_id", "device_id", "created_at"],
    "ix_sessions_organization_platform_created_at": ["organization_id", "platform", "created_at"],
    "ix_sessions_organization_user_platform_created_at": ["organization_id", "user_id", "platform", "created_at"],
    "ix_sessions_organization_user_device_created_at": ["organization_id", "user_id", "device_id", "created_at"],
}
AUDIT_INDEXES = {
    "ix_audit_events_organization_type_created_at": ["organization_id", "type", "created_at"],
    "ix_audit_events_organization_actor_created_at": ["organization_id", "actor_user_id", "created_at"],
    "ix_audit_events_organization_actor_type_created_at": ["organization_id", "actor_user_id", "type", "created_at"],
}


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy of the table: SQLite's copy would have to rebuild
    # the partial unique index that keeps one live session per device. NOT NULL needs a default
    # to add; every session gets its device's platform right after, and every new one is given it.
    platform = sqlmodel.sql.sqltypes.AutoString(length=32)
    op.add_column("sessions", sa.Column("platform", platform, nullable=False, server_default=""))
    op.execute(
        "UPDATE sessions SET platform = (SELECT devices.platform FROM devices WHERE devices.id = sessions.device_id)"
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite cannot drop a default without a copy
        op.alter_column("sessions", "platform", existing_type=platform, server_default=None)
    for name, columns in SESSION_INDEXES.items():
        op.create_index(name, "sessions", columns, unique=False)
    op.create_index(
        "ix_sessions_live_organization_created_at",
        "sessions",
        ["organization_id", "created_at"],
        unique=False,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    for name, columns in AUDIT_INDEXES.items():
        op.create_index(name, "audit_events", columns, unique=False)
    # Who created an organization through the API: what the per-user cap counts.
    # Room for webhook signing secrets sealed at rest (`fernet:<token>`, core.sealing). SQLite
    # copies the table (schema_version.upgrade turns its foreign keys off meanwhile).
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        for column in ("secret", "previous_secret"):
            batch_op.alter_column(
                column,
                existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                type_=sqlmodel.sql.sqltypes.AutoString(length=512),
                existing_nullable=column == "previous_secret",
            )
    # Invitations replace adding members by email (an account lookup for anyone).
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column(
            "role",
            sa.Enum("admin", "readwrite", "readonly", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("invited_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invited_by_user_id"], ["users.id"], name=op.f("fk_invitations_invited_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_invitations_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("organization_id", "created_at", name=op.f("uq_invitations_organization_id_created_at")),
    )
    op.create_index("ix_invitations_email_created_at", "invitations", ["email", "created_at"], unique=False)
    # A plain ADD COLUMN (no copy of the table, which other tables reference), no foreign key.
    op.add_column("organizations", sa.Column("created_by_user_id", sa.Uuid(), nullable=True))
    op.create_index("ix_organizations_created_by_user_id", "organizations", ["created_by_user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_invitations_email_created_at", table_name="invitations")
    op.drop_table("invitations")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        for column in ("secret", "previous_secret"):
            batch_op.alter_column(
                column,
                existing_type=sqlmodel.sql.sqltypes.AutoString(length=512),
                type_=sqlmodel.sql.sqltypes.AutoString(length=128),
                existing_nullable=column == "previous_secret",
            )
    op.drop_index("ix_organizations_created_by_user_id", table_name="organizations")
    op.drop_column("organizations", "created_by_user_id")
    for name in AUDIT_INDEXES:
        op.drop_index(name, table_name="audit_events")
    op.drop_index(
        "ix_sessions_live_organization_created_at",
        table_name="sessions",
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    for name in SESSION_INDEXES:
        op.drop_index(name, table_name="sessions")
    op.drop_column("sessions", "platform")  # SQLite 3.35 drops a column in place, no copy
