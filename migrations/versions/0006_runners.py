"""runners: GitLab jobs, runner instances and containers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runner_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gitlab", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("project_name", sa.String(length=255), nullable=True),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=True),
        sa.Column("job_name", sa.String(length=255), nullable=False),
        sa.Column("stage", sa.String(length=255), nullable=True),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("tags_source", sa.String(length=16), nullable=True),
        sa.Column("ran_on", sa.String(length=255), nullable=True),
        sa.Column("ran_on_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("start_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runner_jobs")),
        sa.UniqueConstraint("gitlab", "job_id", name=op.f("uq_runner_jobs_gitlab_job_id")),
    )
    op.create_index(
        "ix_runner_jobs_phase_profile", "runner_jobs", ["phase", "profile"], unique=False
    )
    op.create_table(
        "runner_webhook_receipts",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_runner_webhook_receipts")),
    )
    op.create_table(
        "runner_job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("runner", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_pk"],
            ["runner_jobs.id"],
            name=op.f("fk_runner_job_events_job_pk_runner_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runner_job_events")),
        sa.UniqueConstraint("job_pk", "status", name=op.f("uq_runner_job_events_job_pk_status")),
    )
    op.create_table(
        "runners",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=True),
        sa.Column("instance_type", sa.String(length=64), nullable=True),
        sa.Column("market", sa.String(length=16), nullable=True),
        sa.Column("option", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("gitlab_runner_id", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(length=512), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_pk"],
            ["runner_jobs.id"],
            name=op.f("fk_runners_job_pk_runner_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_runners")),
        sa.UniqueConstraint("job_pk", name=op.f("uq_runners_job_pk")),
    )
    op.create_index("ix_runners_provider_id", "runners", ["provider_id"], unique=False)
    op.create_index("ix_runners_state_profile", "runners", ["state", "profile"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_runners_state_profile", table_name="runners")
    op.drop_index("ix_runners_provider_id", table_name="runners")
    op.drop_table("runners")
    op.drop_table("runner_job_events")
    op.drop_table("runner_webhook_receipts")
    op.drop_index("ix_runner_jobs_phase_profile", table_name="runner_jobs")
    op.drop_table("runner_jobs")
