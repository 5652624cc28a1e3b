"""session history: a session's own request, found by its session

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:30:00.000000

Every Session answer shows `stateHistory`, whose `queued` state is its session request's
`created_at`: the index finds the request of each session of a page in one probe.
"""

from alembic import op


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_session_requests_session_id", "session_requests", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_session_requests_session_id", table_name="session_requests")
