"""scheduled rules: each rule with a ScheduleExpression keeps its next tick and its region

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rules") as batch:
        batch.add_column(
            sa.Column("next_fire_at", app.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("region", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_rules_next_fire_at"), ["next_fire_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rules") as batch:
        batch.drop_index(batch.f("ix_rules_next_fire_at"))
        batch.drop_column("region")
        batch.drop_column("next_fire_at")
