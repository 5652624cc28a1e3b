"""plans: how many live sessions each organization may hold

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00.000000

An organization's plan, as the operator sets it (`sessions-api org plan`); NULL, as every
existing organization gets, is the default plan of its kind (models.plans).
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("max_live_sessions", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Both databases drop a column in place (SQLite since 3.35): no copy of a referenced table.
    op.execute("ALTER TABLE organizations DROP COLUMN max_live_sessions")
