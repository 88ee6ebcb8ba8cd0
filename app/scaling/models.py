"""Tables of the scaling domain: workers (the registry), per-queue policy state and decisions.
(The work-queue messages the pools run are :mod:`app.queues.models`.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

WORKER_STATES = ("starting", "idle", "busy", "draining", "stopped", "dead")


class ScalingWorker(Base):
    """One worker process, from start to stop; alive while ``heartbeat_at`` is fresh.

    ``held`` lists the broker messages the worker holds (reserved or running) as
    ``{"tag", "queue", "task_id"}``: when the worker dies they are put back at once instead of
    waiting for the broker's visibility timeout.
    """

    __tablename__ = "scaling_workers"
    __table_args__ = (Index("ix_scaling_workers_state_heartbeat", "state", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSON)
    concurrency: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(32))
    backend_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    current_task: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    tasks_done: Mapped[int] = mapped_column(Integer, default=0)
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class ScalingQueue(Base):
    """The autoscaler's memory for one queue: the policy state and the last desired count."""

    __tablename__ = "scaling_queues"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    desired: Mapped[int] = mapped_column(Integer)
    policy_state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ScalingDecision(Base):
    """One change of a queue's desired worker count, with the inputs that led to it."""

    __tablename__ = "scaling_decisions"
    __table_args__ = (Index("ix_scaling_decisions_queue_decided_at", "queue", "decided_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    queue: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
    previous: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    recommendation: Mapped[int] = mapped_column(Integer)
    queued: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)
    live_workers: Mapped[int] = mapped_column(Integer)
    busy_workers: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(255))
    backend: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
