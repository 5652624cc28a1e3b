"""self-service: audit events, key expiry, unique instants of keys and memberships

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:48:14.949482

API keys and memberships become paged lists, so their `created_at` becomes unique (keys
overall, memberships within their organization): existing rows that share an instant are
moved apart by 1 µs, as 0002 did for devices, before the constraints are added.
"""

from datetime import timedelta

import sessions_api.models.types
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_EVENT_TYPES = (
    "key.created",
    "key.revoked",
    "member.added",
    "member.role_changed",
    "member.removed",
    "organization.created",
    "organization.renamed",
    "session.started",
    "session.released",
    "session.expired",
)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("type", sa.Enum(*_EVENT_TYPES, name="auditeventtype", native_enum=False, length=32), nullable=False),
        sa.Column(
            "origin", sa.Enum("api", "cli", "system", name="origin", native_enum=False, length=16), nullable=False
        ),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("actor_key_id", sa.Uuid(), nullable=True),
        sa.Column("target_kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["actor_key_id"], ["api_keys.id"], name=op.f("fk_audit_events_actor_key_id_api_keys")),
        sa.ForeignKeyConstraint(["actor_user_id"], ["users.id"], name=op.f("fk_audit_events_actor_user_id_users")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_audit_events_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("organization_id", "created_at", name=op.f("uq_audit_events_organization_id_created_at")),
    )

    _spread_instants("api_keys", key=("id",), scope=None)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.drop_index(batch_op.f("ix_api_keys_user_id"))
        batch_op.create_index("ix_api_keys_organization_id_created_at", ["organization_id", "created_at"], unique=False)
        batch_op.create_index("ix_api_keys_user_id_created_at", ["user_id", "created_at"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_api_keys_created_at"), ["created_at"])

    _spread_instants("memberships", key=("organization_id", "user_id"), scope="organization_id")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_memberships_organization_id_created_at"), ["organization_id", "created_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_memberships_organization_id_created_at"), type_="unique")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_api_keys_created_at"), type_="unique")
        batch_op.drop_index("ix_api_keys_user_id_created_at")
        batch_op.drop_index("ix_api_keys_organization_id_created_at")
        batch_op.create_index(batch_op.f("ix_api_keys_user_id"), ["user_id"], unique=False)
        batch_op.drop_column("expires_at")

    op.drop_table("audit_events")


def _spread_instants(table_name: str, key: tuple[str, ...], scope: str | None) -> None:
    """Move rows that share a `created_at` (within the same `scope` column value) apart by 1 µs."""
    conn = op.get_bind()
    names = {*key, *((scope,) if scope else ())}
    table = sa.table(
        table_name,
        sa.column("created_at", sessions_api.models.types.UTCDateTime(timezone=True)),
        *(sa.column(name, sa.Uuid()) for name in names),
    )
    taken = set()
    for row in conn.execute(sa.select(table).order_by(table.c.created_at)).all():
        within = getattr(row, scope) if scope else None
        instant = row.created_at
        while (within, instant) in taken:
            instant += timedelta(microseconds=1)
        taken.add((within, instant))
        if instant != row.created_at:
            where = sa.and_(*(table.c[name] == getattr(row, name) for name in key))
            conn.execute(table.update().where(where).values(created_at=instant))
