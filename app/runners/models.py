"""Tables of the runners domain: webhook receipts (dedupe), GitLab jobs with their status
timeline, and the runners (EC2 instances or containers) started for them.

A job is unique per (GitLab instance, job id) and has at most one runner of its own: that pair
of unique rows is what makes "exactly one instance per job" hold under duplicate webhooks, since
EC2's ``ClientToken`` alone is not enforced by every EC2 (moto ignores it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

#: GitLab's build statuses after which a job never runs again.
TERMINAL_STATUSES = ("success", "failed", "canceled", "skipped")
#: Our side of a job: received → (waiting for capacity) → launching → running → finished; or
#: unmatched (no profile takes its tags), failed (its runner could not be started).
#: assigned: a warm-pool runner was bound to it at once (no launch).
JOB_PHASES = (
    "received",
    "waiting",
    "launching",
    "assigned",
    "running",
    "finished",
    "unmatched",
    "failed",
)
#: A runner's life: launching → running → terminating → terminated; or failed to start. A
#: warm-pool runner is ``idle`` (launched, registered, no job) between jobs.
RUNNER_STATES = ("launching", "idle", "running", "terminating", "terminated", "failed")
LIVE_RUNNER_STATES = ("launching", "idle", "running")


class WebhookReceipt(Base):
    """One accepted webhook delivery, keyed by ``Idempotency-Key`` or ``X-Gitlab-Event-UUID``:
    a resend with the same key is answered 200 and changes nothing."""

    __tablename__ = "runner_webhook_receipts"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RunnerJob(Base):
    """A GitLab CI job as the webhooks told us about it."""

    __tablename__ = "runner_jobs"
    __table_args__ = (
        UniqueConstraint("gitlab", "job_id"),
        Index("ix_runner_jobs_phase_profile", "phase", "profile"),
        Index("ix_runner_jobs_job_id", "job_id"),  # recovery's rows of a job (lifecycle.record)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gitlab: Mapped[str] = mapped_column(String(255))  # X-Gitlab-Instance
    job_id: Mapped[int] = mapped_column(BigInteger)
    project_id: Mapped[int] = mapped_column(BigInteger)
    project_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pipeline_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    job_name: Mapped[str] = mapped_column(String(255))
    stage: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(32))  # GitLab's build_status, latest that counts
    phase: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    tags_source: Mapped[str | None] = mapped_column(String(16), nullable=True)  # gitlab | map
    ran_on: Mapped[str | None] = mapped_column(String(255), nullable=True)  # runner.description
    ran_on_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # runner.id
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # last pending
    on_demand: Mapped[bool] = mapped_column(Boolean, default=False)  # a spot interruption's retry
    retry_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the interrupted job
    start_attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RunnerJobEvent(Base):
    """One status of a job's timeline, once per status (a redelivered event adds nothing)."""

    __tablename__ = "runner_job_events"
    __table_args__ = (UniqueConstraint("job_pk", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("runner_jobs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    runner: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Runner(Base):
    """An ephemeral runner: an EC2 instance or a container, started for one job or, in a
    profile's warm pool (``pool``), ahead of any job.

    ``name`` is also the GitLab runner's description (``smokehouse-<job id>-<suffix>``, or
    ``smokehouse-pool-<hex>``), which the Job Hook reports back in ``runner.description``: how
    a stolen job is traced to the instance that actually ran it. ``job_pk`` is the job bound to
    it now (its own job; for a pool runner the one it serves, none while idle)."""

    __tablename__ = "runners"
    __table_args__ = (
        UniqueConstraint("job_pk"),
        Index("ix_runners_state_profile", "state", "profile"),
        Index("ix_runners_provider_id", "provider_id"),
        Index("ix_runners_pool_state", "pool", "profile", "state"),
    )

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    job_pk: Mapped[int | None] = mapped_column(
        ForeignKey("runner_jobs.id", ondelete="CASCADE"), nullable=True
    )
    pool: Mapped[bool] = mapped_column(Boolean, default=False)
    uses: Mapped[int] = mapped_column(Integer, default=0)  # jobs it finished
    idle_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    subnet_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # ec2 | container
    profile: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    instance_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    market: Mapped[str | None] = mapped_column(String(16), nullable=True)  # spot | on-demand
    option: Mapped[int] = mapped_column(Integer, default=0)  # index into the launch options
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    gitlab_runner_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(512), nullable=True)  # execution launching it
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
