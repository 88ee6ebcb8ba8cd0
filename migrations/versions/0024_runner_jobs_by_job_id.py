"""runner jobs by job id: an index on ``runner_jobs.job_id``

Every Job Hook of a job not yet recorded looks for recovery's row of the same job under another
instance name (``job_id = ? AND gitlab <> ?``); the only index started with ``gitlab``, so that
lookup read the whole table, once per new job.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runner_jobs_job_id", "runner_jobs", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_runner_jobs_job_id", table_name="runner_jobs")
