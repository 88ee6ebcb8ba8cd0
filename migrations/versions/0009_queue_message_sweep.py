"""queue messages: when each was last handed to the broker, for the sweeper

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        # Existing rows count as enqueued when they were created.
        batch_op.add_column(
            sa.Column("enqueued_at", app.db.UtcDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE queue_messages SET enqueued_at = created_at")
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.alter_column(
            "enqueued_at", existing_type=app.db.UtcDateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_queue_messages_status_enqueued_at", ["status", "enqueued_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_messages_status_enqueued_at")
        batch_op.drop_column("enqueued_at")
