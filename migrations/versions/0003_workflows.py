"""workflows: state machines, content-addressed definitions, executions, history, waits

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "state_machine_definitions",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_state_machine_definitions")),
    )
    op.create_table(
        "state_machines",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("arn", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("role_arn", sa.String(length=256), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("logging_configuration", sa.JSON(), nullable=True),
        sa.Column("revision_id", sa.String(length=36), nullable=False),
        sa.Column("managed_by", sa.String(length=256), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_hash"],
            ["state_machine_definitions.hash"],
            name=op.f("fk_state_machines_definition_hash_state_machine_definitions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_machines")),
        sa.UniqueConstraint("arn", name=op.f("uq_state_machines_arn")),
        sa.UniqueConstraint("name", name=op.f("uq_state_machines_name")),
    )
    op.create_table(
        "executions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("arn", sa.String(length=256), nullable=False),
        sa.Column("state_machine_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("start_date", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stop_date", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_hash"],
            ["state_machine_definitions.hash"],
            name=op.f("fk_executions_definition_hash_state_machine_definitions"),
        ),
        sa.ForeignKeyConstraint(
            ["state_machine_id"],
            ["state_machines.id"],
            name=op.f("fk_executions_state_machine_id_state_machines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint("arn", name=op.f("uq_executions_arn")),
        sa.UniqueConstraint(
            "state_machine_id", "name", name=op.f("uq_executions_state_machine_id_name")
        ),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_executions_machine_start", ["state_machine_id", "start_date"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_executions_status"), ["status"], unique=False)

    op.create_table(
        "execution_events",
        sa.Column(
            "execution_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("previous_event_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("timestamp", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_events_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", "event_id", name=op.f("pk_execution_events")),
    )
    op.create_table(
        "execution_tasks",
        sa.Column(
            "execution_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.String(length=1024), nullable=True),
        sa.Column("state_name", sa.String(length=80), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=True),
        sa.Column("timeout_seconds", sa.Integer(), nullable=True),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("task_token", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("enqueued_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_tasks_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", "ref", name=op.f("pk_execution_tasks")),
        sa.UniqueConstraint("task_token", name=op.f("uq_execution_tasks_task_token")),
    )
    with op.batch_alter_table("execution_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_execution_tasks_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("execution_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_execution_tasks_due")

    op.drop_table("execution_tasks")
    op.drop_table("execution_events")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_executions_status"))
        batch_op.drop_index("ix_executions_machine_start")

    op.drop_table("executions")
    op.drop_table("state_machines")
    op.drop_table("state_machine_definitions")
