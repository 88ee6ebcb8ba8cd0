"""map runs: the Map Runs of distributed Map states and which execution runs which item

``map_runs`` is one row per Map Run (its parent execution, status, MaxConcurrency, failure
thresholds and totals; an EXPRESS run's counts, whose children are not stored), kept in step
with the parent's interpreter state by the parent's steps.
``map_run_children`` records the child execution of each item (or batch). A Map Run's children
belong to a state machine named ``<machine>/<label>`` (as on AWS), so ``state_machines.name``
grows to 128 characters.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "map_runs",
        sa.Column("arn", sa.String(length=1024), nullable=False),
        sa.Column("execution_id", _BIG_ID, nullable=False),
        sa.Column("state_machine_arn", sa.String(length=512), nullable=False),
        sa.Column("execution_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_date", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stop_date", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("tolerated_failure_percentage", sa.Float(), nullable=False),
        sa.Column("tolerated_failure_count", sa.Integer(), nullable=False),
        sa.Column("item_total", sa.Integer(), nullable=False),
        sa.Column("execution_total", sa.Integer(), nullable=False),
        sa.Column("express_counts", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("arn"),
    )
    with op.batch_alter_table("map_runs", schema=None) as batch_op:
        batch_op.create_index("ix_map_runs_execution", ["execution_id", "start_date"], unique=False)
    op.create_table(
        "map_run_children",
        sa.Column("map_run_arn", sa.String(length=1024), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("execution_id", _BIG_ID, nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["map_run_arn"], ["map_runs.arn"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("map_run_arn", "index"),
    )
    with op.batch_alter_table("map_run_children", schema=None) as batch_op:
        batch_op.create_index("ix_map_run_children_execution", ["execution_id"], unique=True)
    with op.batch_alter_table("state_machines", schema=None) as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=80), type_=sa.String(length=128)
        )


def downgrade() -> None:
    with op.batch_alter_table("state_machines", schema=None) as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=128), type_=sa.String(length=80)
        )
    with op.batch_alter_table("map_run_children", schema=None) as batch_op:
        batch_op.drop_index("ix_map_run_children_execution")
    op.drop_table("map_run_children")
    with op.batch_alter_table("map_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_map_runs_execution")
    op.drop_table("map_runs")
