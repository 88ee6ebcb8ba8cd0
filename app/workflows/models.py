"""The workflow tables: state machines, their definitions, executions, history and waits.

* ``state_machine_definitions`` is content-addressed (sha256 of the text): an execution keeps
  running the definition it started with after ``UpdateStateMachine``, as on AWS, without copying
  the text into every execution.
* ``executions.state`` is the interpreter's ``ExecutionState`` JSON and ``version`` guards it:
  every step is one compare-and-set UPDATE, so a duplicate or concurrent step changes nothing.
* ``execution_events`` is the append-only history (``GetExecutionHistory``).
* ``execution_tasks`` holds what an execution waits on — tasks to run, callback tokens, timers —
  so they survive restarts and a sweeper can find the ones a dead worker or a lost broker message
  left behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime, utcnow

#: BIGINT on PostgreSQL; SQLite only autoincrements an ``INTEGER PRIMARY KEY``.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class StateMachineDefinition(Base):
    __tablename__ = "state_machine_definitions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class StateMachine(Base):
    __tablename__ = "state_machines"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # 128: a Map Run's machine is "<machine>/<label>" (app.workflows.resources.map_run_child)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    arn: Mapped[str] = mapped_column(String(256), unique=True)
    type: Mapped[str] = mapped_column(String(16))  # STANDARD | EXPRESS
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")  # ACTIVE | DELETING
    definition_hash: Mapped[str] = mapped_column(ForeignKey("state_machine_definitions.hash"))
    role_arn: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(256))
    logging_configuration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    revision_id: Mapped[str] = mapped_column(String(36))
    # "definitions:<file>" for machines registered from app/definitions (see definitions.py).
    managed_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("state_machine_id", "name"),
        Index("ix_executions_machine_start", "state_machine_id", "start_date"),
        Index("ix_executions_parent", "parent_id", "parent_ref"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    arn: Mapped[str] = mapped_column(String(256), unique=True)
    state_machine_id: Mapped[str] = mapped_column(
        ForeignKey("state_machines.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(80))
    definition_hash: Mapped[str] = mapped_column(ForeignKey("state_machine_definitions.hash"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cause: Mapped[str | None] = mapped_column(Text)
    start_date: Mapped[datetime] = mapped_column(UtcDateTime())
    stop_date: Mapped[datetime | None] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(Text)  # ExecutionState JSON
    version: Mapped[int] = mapped_column(Integer)  # compare-and-set guard of ``state``
    # Started by a ``states:startExecution`` Task state: the parent execution and its task's ref
    # (one child per task attempt). ``parent_wait`` ("sync" | "sync:2") when that task waits for
    # this execution to end (``.sync``): its end reschedules the task, its stop is ours.
    parent_id: Mapped[int | None] = mapped_column(BigId)
    parent_ref: Mapped[str | None] = mapped_column(String(512))
    parent_wait: Mapped[str | None] = mapped_column(String(8))


class ExecutionEvent(Base):
    """One history event; never updated."""

    __tablename__ = "execution_events"

    execution_id: Mapped[int] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    previous_event_id: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime())
    details: Mapped[str | None] = mapped_column(Text)  # JSON {"<detailsKey>": {...}}


class ExecutionTask(Base):
    """A task to run or a timer to fire, keyed by the interpreter's ref.

    ``status``: ``scheduled`` (to be run/fired) → ``running`` (a worker claimed it until
    ``claimed_until``) → ``waiting`` (``.waitForTaskToken``: the resource ran, the token is out)
    → ``done``; or ``cancelled`` when the execution stopped waiting for it.
    """

    __tablename__ = "execution_tasks"
    __table_args__ = (Index("ix_execution_tasks_due", "status", "due_at"),)

    execution_id: Mapped[int] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    ref: Mapped[str] = mapped_column(String(512), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # task | timer
    purpose: Mapped[str] = mapped_column(String(24))  # task | wait | retry | timeout | ...
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resource: Mapped[str | None] = mapped_column(String(1024))
    state_name: Mapped[str | None] = mapped_column(String(80))
    parameters: Mapped[str | None] = mapped_column(Text)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer)
    task_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
