"""runner pool: warm runners without a job yet, jobs per runner, subnets, spot interruptions

A warm-pool runner is launched before any job, so ``runners.job_pk`` becomes nullable (still
unique: a job has at most one runner bound to it). ``pool`` marks such runners, ``uses`` counts
the jobs a runner finished (``max_use``), ``idle_since`` is when it last became free and
``subnet_id`` where it was launched. A job retried after a spot interruption remembers the job
it replaces (``retry_of``) and is launched on demand (``on_demand``).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runners", schema=None) as batch_op:
        batch_op.alter_column("job_pk", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(
            sa.Column("pool", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("uses", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("idle_since", app.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("subnet_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_runners_pool_state", ["pool", "profile", "state"], unique=False)
    with op.batch_alter_table("runner_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("on_demand", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("retry_of", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM runners WHERE job_pk IS NULL")
    with op.batch_alter_table("runner_jobs", schema=None) as batch_op:
        batch_op.drop_column("retry_of")
        batch_op.drop_column("on_demand")
    with op.batch_alter_table("runners", schema=None) as batch_op:
        batch_op.drop_index("ix_runners_pool_state")
        batch_op.drop_column("subnet_id")
        batch_op.drop_column("idle_since")
        batch_op.drop_column("uses")
        batch_op.drop_column("pool")
        batch_op.alter_column("job_pk", existing_type=sa.Integer(), nullable=False)
