"""usage: the longest any ended session of each organization lasted

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:30:00.000000

A usage report (getUsage) reads the sessions that ran in its range from the index on
(organization_id, created_at): those started up to this many seconds before the range (and
the live ones from their own index). The transactions that end sessions keep it; here it is
computed once from the sessions already stored.
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# How long an ended session lasted, in whole seconds rounded up (SQLite: one second more, for
# julianday's rounding).
LENGTH = {
    "sqlite": "CAST((julianday(released_at) - julianday(created_at)) * 86400 + 1 AS INTEGER)",
    "postgresql": "CAST(CEIL(EXTRACT(EPOCH FROM released_at - created_at)) AS BIGINT)",
}


def upgrade() -> None:
    op.add_column(
        "organizations", sa.Column("longest_session_seconds", sa.BigInteger(), nullable=False, server_default="0")
    )
    length = LENGTH[op.get_bind().dialect.name]
    op.execute(
        "UPDATE organizations SET longest_session_seconds = COALESCE("
        f"(SELECT MAX({length}) FROM sessions WHERE sessions.organization_id = organizations.id"
        " AND released_at IS NOT NULL), 0)"
    )


def downgrade() -> None:
    # Both databases drop a column in place (SQLite since 3.35): no copy of a referenced table.
    op.execute("ALTER TABLE organizations DROP COLUMN longest_session_seconds")
