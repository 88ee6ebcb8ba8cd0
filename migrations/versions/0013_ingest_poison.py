"""ingest poison: dead letters keep the message's exact bytes and when they were redriven

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("iot_dead_letters") as batch:
        batch.add_column(sa.Column("raw", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("redriven_at", app.db.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("iot_dead_letters") as batch:
        batch.drop_column("redriven_at")
        batch.drop_column("raw")
