"""schedule client tokens: CreateSchedule and CreateScheduleGroup are idempotent by ClientToken

botocore fills ``ClientToken`` (an idempotency token) and resends the same one when a request's
answer was lost; the resend must get the first call's answer, not a ConflictException.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("schedules", "schedule_groups"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("client_token", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in ("schedules", "schedule_groups"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("client_token")
