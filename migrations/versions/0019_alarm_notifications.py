"""alarm notifications: what each alarm transition's notification did, and where it went

Each entry is ``{action, at, outcome, targets}`` with the targets as Apprise's privacy mode shows
them (tokens masked): the cook page's alarm history says "notified where" without holding a
secret. Existing alarms get none (their notifications were not recorded).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("iot_alarms", sa.Column("notifications", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Not a batch: SQLite's copy-and-move would lose the expression index uq_iot_alarms_open
    # (it cannot be reflected); SQLite >= 3.35 drops a column in place.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE iot_alarms DROP COLUMN notifications")
    else:
        op.drop_column("iot_alarms", "notifications")
