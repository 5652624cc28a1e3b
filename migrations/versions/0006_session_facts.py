"""session facts: a session's name, build, tags, metadata and result

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 06:00:00.000000

A session carries what its callers say of it (createSession's `facts`, updateSession). A
build's sessions and its failures are read from keyset indexes ending in `created_at`, as
every other filter of listSessions; a tag's sessions from `session_tags`, keyed the same way.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sessions_api.models.types


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SESSION_INDEXES = {
    "ix_sessions_organization_build_created_at": ["organization_id", "build", "created_at"],
    "ix_sessions_organization_result_created_at": ["organization_id", "result", "created_at"],
    "ix_sessions_organization_build_result_created_at": ["organization_id", "build", "result", "created_at"],
}


def upgrade() -> None:
    # Plain ADD COLUMNs (no copy of the table and its partial unique index); existing sessions
    # get no facts: no name, build or result, `[]` tags and `{}` metadata.
    label = sqlmodel.sql.sqltypes.AutoString(length=255)
    op.add_column("sessions", sa.Column("name", label, nullable=True))
    op.add_column("sessions", sa.Column("build", label, nullable=True))
    op.add_column("sessions", sa.Column("tags", sa.Text(), nullable=False, server_default="[]"))
    op.add_column("sessions", sa.Column("metadata_json", sa.Text(), nullable=False, server_default="{}"))
    op.add_column("sessions", sa.Column("result", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.add_column("sessions", sa.Column("result_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
    for name, columns in SESSION_INDEXES.items():
        op.create_index(name, "sessions", columns, unique=False)
    op.create_table(
        "session_tags",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_session_tags_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_session_tags_session_id_sessions")),
        sa.PrimaryKeyConstraint("organization_id", "tag", "created_at", name=op.f("pk_session_tags")),
    )
    op.create_index("ix_session_tags_session_id", "session_tags", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_session_tags_session_id", table_name="session_tags")
    op.drop_table("session_tags")
    for name in SESSION_INDEXES:
        op.drop_index(name, table_name="sessions")
    for column in ("result_reason", "result", "metadata_json", "tags", "build", "name"):
        op.drop_column("sessions", column)  # SQLite 3.35 drops a column in place, no copy
