"""queue messages: work-queue messages, their status, result and task token

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("handler", sa.String(length=200), nullable=True),
        sa.Column("state_machine", sa.String(length=256), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=256), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("task_token", sa.String(length=64), nullable=True),
        sa.Column("execution_arn", sa.String(length=512), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_messages")),
        sa.UniqueConstraint("task_token", name=op.f("uq_queue_messages_task_token")),
    )
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_messages_queue_status_created_at",
            ["queue", "status", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_messages_queue_status_created_at")

    op.drop_table("queue_messages")
