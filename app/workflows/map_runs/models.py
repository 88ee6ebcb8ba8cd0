"""The Map Run tables (migration ``0023``).

* ``map_runs`` — one row per Map Run, written in the step transaction that records its
  ``MapRunStarted`` and updated by the steps that change it (its items read, UpdateMapRun, its
  end). ``item_total``/``execution_total`` are 0 until the items are known. An EXPRESS run's
  children are not stored, so its counts come from the parent's state (``express_counts``).
* ``map_run_children`` — a row per child execution the run started (``index`` is the
  child's place in the run; ``item_count`` the items it got: 1, or its batch's size), written
  with the child in one transaction, so counts come from the children's own status.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime
from app.workflows.models import BigId


class MapRun(Base):
    __tablename__ = "map_runs"
    __table_args__ = (Index("ix_map_runs_execution", "execution_id", "start_date"),)

    arn: Mapped[str] = mapped_column(String(1024), primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE")
    )
    state_machine_arn: Mapped[str] = mapped_column(String(512))  # <machine ARN>/<label>
    execution_type: Mapped[str] = mapped_column(String(16))  # STANDARD | EXPRESS
    status: Mapped[str] = mapped_column(String(16))  # RUNNING | SUCCEEDED | FAILED | ABORTED
    start_date: Mapped[datetime] = mapped_column(UtcDateTime())
    stop_date: Mapped[datetime | None] = mapped_column(UtcDateTime())
    max_concurrency: Mapped[int] = mapped_column(Integer, default=0)
    tolerated_failure_percentage: Mapped[float] = mapped_column(Float, default=0.0)
    tolerated_failure_count: Mapped[int] = mapped_column(Integer, default=0)
    item_total: Mapped[int] = mapped_column(Integer, default=0)
    execution_total: Mapped[int] = mapped_column(Integer, default=0)
    #: EXPRESS runs only: {"items_succeeded", "items_failed", "executions_succeeded",
    #: "executions_failed", "running"} as the parent's interpreter counted them.
    express_counts: Mapped[dict[str, int] | None] = mapped_column(JSON)


class MapRunChild(Base):
    __tablename__ = "map_run_children"
    __table_args__ = (Index("ix_map_run_children_execution", "execution_id", unique=True),)

    map_run_arn: Mapped[str] = mapped_column(
        ForeignKey("map_runs.arn", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE")
    )
    item_count: Mapped[int] = mapped_column(Integer, default=1)
