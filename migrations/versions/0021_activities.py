"""activities: Step Functions activities and the activity tasks waiting for a worker to poll

``activities`` is what ``CreateActivity`` made. ``activity_tasks`` holds a scheduled activity
task until a ``GetActivityTask`` poller starts it: ``claim``/``claimed_until`` is the short lease
a poller holds between taking the row and recording ``ActivityStarted`` (if it dies in between,
the lease lapses and another poller takes the task). The token itself and the task's later life
stay in ``execution_tasks``.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("arn", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("encryption_configuration", sa.JSON(), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("arn"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "activity_tasks",
        sa.Column("task_token", sa.String(length=64), nullable=False),
        sa.Column("activity_arn", sa.String(length=256), nullable=False),
        sa.Column(
            "execution_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("scheduled_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("claim", sa.String(length=36), nullable=True),
        sa.Column("claimed_until", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_token"),
    )
    with op.batch_alter_table("activity_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_activity_tasks_poll", ["activity_arn", "scheduled_at"], unique=False
        )
        batch_op.create_index("ix_activity_tasks_execution", ["execution_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("activity_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_activity_tasks_execution")
        batch_op.drop_index("ix_activity_tasks_poll")
    op.drop_table("activity_tasks")
    op.drop_table("activities")
