"""session lifecycle: expiry, one live session per device, device states, idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:42:45.954774

Existing data is brought into line before the new constraints: sessions get an expiry
(created + 60 minutes); on a device holding several live sessions, all but the newest are
released at that expiry; devices that share an added-at instant are moved apart by 1 µs.
"""

from datetime import timedelta

import sessions_api.models.types
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_DEFAULT_DURATION = timedelta(minutes=60)
_LIVE = sa.text("released_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.Column("created_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_idempotency_keys_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("organization_id", "key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))
    _spread_device_instants()
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_devices_created_at"), ["created_at"])

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", sessions_api.models.types.UTCDateTime(timezone=True), nullable=True)
        )
    _backfill_expiry_and_single_live_session()
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=sessions_api.models.types.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.create_check_constraint("expires_after_created", "expires_at >= created_at")
        batch_op.create_index(
            "ix_sessions_live_expires_at", ["expires_at"], unique=False, sqlite_where=_LIVE, postgresql_where=_LIVE
        )
        batch_op.create_index(
            "uq_sessions_live_device_id", ["device_id"], unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("uq_sessions_live_device_id", sqlite_where=_LIVE, postgresql_where=_LIVE)
        batch_op.drop_index("ix_sessions_live_expires_at", sqlite_where=_LIVE, postgresql_where=_LIVE)
        batch_op.drop_constraint(op.f("ck_sessions_expires_after_created"), type_="check")
        batch_op.drop_column("expires_at")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_devices_created_at"), type_="unique")
        batch_op.drop_column("disabled")

    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")


def _table(name: str, *columns: str) -> sa.Table:
    types = {"id": sa.Uuid(), "device_id": sa.Uuid()}
    return sa.table(
        name, *(sa.column(c, types.get(c, sessions_api.models.types.UTCDateTime(timezone=True))) for c in columns)
    )


def _spread_device_instants() -> None:
    conn = op.get_bind()
    devices = _table("devices", "id", "created_at")
    taken = set()
    for device_id, created_at in conn.execute(
        sa.select(devices.c.id, devices.c.created_at).order_by(devices.c.created_at)
    ).all():
        instant = created_at
        while instant in taken:
            instant += timedelta(microseconds=1)
        taken.add(instant)
        if instant != created_at:
            conn.execute(devices.update().where(devices.c.id == device_id).values(created_at=instant))


def _backfill_expiry_and_single_live_session() -> None:
    conn = op.get_bind()
    sessions = _table("sessions", "id", "device_id", "created_at", "released_at", "expires_at")
    rows = conn.execute(
        sa.select(sessions.c.id, sessions.c.device_id, sessions.c.created_at, sessions.c.released_at).order_by(
            sessions.c.device_id, sessions.c.created_at.desc()
        )
    ).all()
    newest_live_seen = set()
    for session_id, device_id, created_at, released_at in rows:
        values = {"expires_at": created_at + _DEFAULT_DURATION}
        if released_at is None:
            if device_id in newest_live_seen:
                values["released_at"] = values["expires_at"]
            newest_live_seen.add(device_id)
        conn.execute(sessions.update().where(sessions.c.id == session_id).values(**values))
