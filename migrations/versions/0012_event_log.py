"""event log: every event of an organization, in its commit order, for listEvents

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 19:00:00.000000

`events` holds each event once, written in the transaction of the change that caused it
(models.events); kept `SESSIONS_API_EVENT_RETENTION_DAYS`, swept oldest first.
"""

from alembic import op
import sqlalchemy as sa

import sqlmodel

from sessions_api.models.types import UTCDateTime


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("admins_only", sa.Boolean(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name="fk_events_organization_id_organizations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("organization_id", "created_at", name="uq_events_organization_created_at"),
    )
    for name, columns in (
        ("ix_events_organization_admins_only_created_at", ["organization_id", "admins_only", "created_at"]),
        ("ix_events_organization_category_created_at", ["organization_id", "category", "created_at"]),
        ("ix_events_organization_type_created_at", ["organization_id", "type", "created_at"]),
        ("ix_events_organization_session_created_at", ["organization_id", "session_id", "created_at"]),
        ("ix_events_created_at", ["created_at"]),
    ):
        op.create_index(name, "events", columns)


def downgrade() -> None:
    op.drop_table("events")
