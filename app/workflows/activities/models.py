"""The activity tables (migration ``0021``).

* ``activities`` — what ``CreateActivity`` made (name unique: the ARN is minted from it).
* ``activity_tasks`` — a scheduled activity task until a poller starts it. The row is written
  in the transaction of the step that scheduled the task and deleted in the one that records
  its ``ActivityStarted``; ``claim``/``claimed_until`` is the short lease a poller holds between
  the two (a poller that dies in between leaves a lease that lapses). The token and the rest of
  the task's life stay in ``execution_tasks``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime, utcnow
from app.workflows.models import BigId


class Activity(Base):
    __tablename__ = "activities"

    arn: Mapped[str] = mapped_column(String(256), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    encryption_configuration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ActivityTask(Base):
    __tablename__ = "activity_tasks"
    __table_args__ = (
        Index("ix_activity_tasks_poll", "activity_arn", "scheduled_at"),
        Index("ix_activity_tasks_execution", "execution_id"),
    )

    task_token: Mapped[str] = mapped_column(String(64), primary_key=True)
    activity_arn: Mapped[str] = mapped_column(String(256))
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE")
    )
    ref: Mapped[str] = mapped_column(String(512))
    input: Mapped[str] = mapped_column(Text)
    scheduled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    claim: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
