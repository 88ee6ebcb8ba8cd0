"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pings",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pings")),
    )
    with op.batch_alter_table("pings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pings_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pings_received_at"))

    op.drop_table("pings")
