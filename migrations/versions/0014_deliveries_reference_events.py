"""deliveries reference events: the outbox keeps the event's id, not a copy of its body

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 21:30:00.000000

A webhook delivery's body is built from its event's row in the log (`event_id` = `events.id`):
`events.occurred` keeps the body's `timestamp`, and `webhook_deliveries.payload` is kept only
for test events, which the log does not hold. Events written before this take their instant
as when they happened; deliveries written before it keep the body they have.
"""

import json

from alembic import op
import sqlalchemy as sa

from sessions_api.models.types import UTCDateTime


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("occurred", UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE events SET occurred = created_at")
    with op.batch_alter_table("events") as batch_op:
        batch_op.alter_column("occurred", existing_type=UTCDateTime(timezone=True), nullable=False)
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.alter_column("payload", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    # Each delivery carries its body again, built from its event as the server built it.
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT d.id, d.event_type, e.occurred, e.data FROM webhook_deliveries d"
            " JOIN events e ON e.id = d.event_id WHERE d.payload IS NULL"
        ).columns(id=sa.Uuid(), event_type=sa.Text(), occurred=UTCDateTime(timezone=True), data=sa.Text())
    ).all()
    for row in rows:
        stamp = row.occurred.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        payload = f'{{"type":{json.dumps(row.event_type)},"timestamp":"{stamp}","data":{row.data}}}'
        bind.execute(
            sa.text("UPDATE webhook_deliveries SET payload = :payload WHERE id = :id").bindparams(
                sa.bindparam("id", type_=sa.Uuid())
            ),
            {"payload": payload, "id": row.id},
        )
    # Those whose event has left the log have nothing to send.
    bind.execute(sa.text("UPDATE webhook_deliveries SET payload = '{}', status = 'failed' WHERE payload IS NULL"))
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.alter_column("payload", existing_type=sa.Text(), nullable=False)
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("occurred")
