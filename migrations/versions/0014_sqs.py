"""sqs: SQS-compatible queues on the work-queue store (messages gain SQS columns)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

when = app.db.UtcDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("queue_messages") as batch:
        batch.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("message_attributes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("system_attributes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("md5_body", sa.String(32), nullable=True))
        batch.add_column(sa.Column("md5_attributes", sa.String(32), nullable=True))
        batch.add_column(sa.Column("visible_at", when, nullable=True))
        batch.add_column(sa.Column("receipt", sa.String(64), nullable=True))
        batch.add_column(sa.Column("group_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("dedup_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("source_queue", sa.String(80), nullable=True))
        batch.create_index("ix_queue_messages_queue_visible_at", ["queue", "visible_at"])
    op.create_table(
        "sqs_queues",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("fifo", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("modified_at", when, nullable=False),
        sa.Column("purged_at", when, nullable=True),
    )
    op.create_table(
        "sqs_deduplication",
        sa.Column("queue", sa.String(80), primary_key=True),
        sa.Column("dedup_id", sa.String(128), primary_key=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", when, nullable=False),
    )
    op.create_table(
        "sqs_move_tasks",
        sa.Column("handle", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("destination", sa.String(80), nullable=True),
        sa.Column("max_per_second", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("moved", sa.Integer(), nullable=False),
        sa.Column("to_move", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("started_at", when, nullable=False),
    )
    op.create_index("ix_sqs_move_tasks_source", "sqs_move_tasks", ["source"])


def downgrade() -> None:
    op.drop_index("ix_sqs_move_tasks_source", "sqs_move_tasks")
    op.drop_table("sqs_move_tasks")
    op.drop_table("sqs_deduplication")
    op.drop_table("sqs_queues")
    with op.batch_alter_table("queue_messages") as batch:
        batch.drop_index("ix_queue_messages_queue_visible_at")
        for column in (
            "source_queue",
            "sequence",
            "dedup_id",
            "group_id",
            "receipt",
            "visible_at",
            "md5_attributes",
            "md5_body",
            "system_attributes",
            "message_attributes",
            "body",
        ):
            batch.drop_column(column)
