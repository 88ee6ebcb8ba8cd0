"""scheduled rules: each rule with a ScheduleExpression keeps its next tick and its region

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rules") as batch:
        batch.add_column(
            sa.Column("next_fire_at", app.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("region", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_rules_next_fire_at"), ["next_fire_at"], unique=False)

    op.create_table(
        "schedule_groups",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedule_groups")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("expression", sa.String(length=256), nullable=False),
        sa.Column("timezone", sa.String(length=50), nullable=False),
        sa.Column("start_date", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_date", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("flexible_window", sa.JSON(), nullable=False),
        sa.Column("action_after_completion", sa.String(length=16), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("kms_key_arn", sa.String(length=2048), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("next_fire_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("group_name", "name", name=op.f("uq_schedules_group_name_name")),
    )
    op.create_index(op.f("ix_schedules_group_name"), "schedules", ["group_name"], unique=False)
    op.create_index(op.f("ix_schedules_next_fire_at"), "schedules", ["next_fire_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_schedules_next_fire_at"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_group_name"), table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("schedule_groups")
    with op.batch_alter_table("rules") as batch:
        batch.drop_index(batch.f("ix_rules_next_fire_at"))
        batch.drop_column("region")
        batch.drop_column("next_fire_at")
