"""scaling: worker registry, per-queue autoscaler state, scaling decisions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scaling_workers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("backend_ref", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("current_task", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.Column("held", sa.JSON(), nullable=False),
        sa.Column("tasks_done", sa.Integer(), nullable=False),
        sa.Column("busy_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_workers")),
    )
    with op.batch_alter_table("scaling_workers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scaling_workers_state_heartbeat", ["state", "heartbeat_at"], unique=False
        )
    op.create_table(
        "scaling_queues",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("policy_state", sa.JSON(), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scaling_queues")),
    )
    op.create_table(
        "scaling_decisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("decided_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("previous", sa.Integer(), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("recommendation", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("live_workers", sa.Integer(), nullable=False),
        sa.Column("busy_workers", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("error", sa.String(length=1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_decisions")),
    )
    with op.batch_alter_table("scaling_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scaling_decisions_queue_decided_at", ["queue", "decided_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("scaling_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_scaling_decisions_queue_decided_at")
    op.drop_table("scaling_decisions")
    op.drop_table("scaling_queues")
    with op.batch_alter_table("scaling_workers", schema=None) as batch_op:
        batch_op.drop_index("ix_scaling_workers_state_heartbeat")
    op.drop_table("scaling_workers")
