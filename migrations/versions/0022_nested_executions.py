"""nested executions: an execution started by a ``states:startExecution`` Task state names its
parent execution and the parent task's ref, and whether that task waits for it (``.sync``).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("parent_ref", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("parent_wait", sa.String(length=8), nullable=True))
        batch_op.create_index("ix_executions_parent", ["parent_id", "parent_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_parent")
        batch_op.drop_column("parent_wait")
        batch_op.drop_column("parent_ref")
        batch_op.drop_column("parent_id")
