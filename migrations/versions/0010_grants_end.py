"""grants end: why a queued start was cancelled, and the pending invitations per organization

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 15:00:00.000000

`session_requests.cancel_reason` says why a cancelled request ended (its caller, or its grant
ending: the member removed or demoted, its key revoked or expired). The partial index on
pending invitations keeps counting an organization's pending ones (its cap) bounded by them.
"""

from alembic import op
import sqlalchemy as sa

import sqlmodel


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "session_requests", sa.Column("cancel_reason", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
    )
    op.execute("UPDATE session_requests SET cancel_reason = 'caller' WHERE status = 'cancelled'")
    op.create_index(
        "ix_invitations_pending_organization_expires_at",
        "invitations",
        ["organization_id", "expires_at"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_invitations_pending_organization_expires_at", table_name="invitations")
    with op.batch_alter_table("session_requests") as batch:
        batch.drop_column("cancel_reason")
