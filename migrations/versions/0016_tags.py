"""tags: one tag store for EventBridge buses and rules and Step Functions state machines

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resource_tags",
        sa.Column("arn", sa.String(512), primary_key=True),
        sa.Column("tags", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("resource_tags")
