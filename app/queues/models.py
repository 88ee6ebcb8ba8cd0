"""The work-queue messages table (the SQS stand-in): what to run, how, and how it ended.
Moved from ``app.scaling.models``; the table name and its Alembic history are unchanged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

MESSAGE_MODES = ("sync", "async")
MESSAGE_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "dead")
#: ``dead``: received more than its queue's cap (``SMOKEHOUSE_QUEUES_MAX_RECEIVE_COUNT``)
#: without finishing -- it kept killing its worker; never run again unless redriven.
FINISHED = ("succeeded", "failed", "dead")


class QueueMessage(Base):
    """One work-queue message: what to run (a handler or a state machine), how (``sync`` waits
    for the handler's result, ``async`` waits for a task-token callback) and how it ended."""

    __tablename__ = "queue_messages"
    __table_args__ = (
        Index("ix_queue_messages_queue_status_created_at", "queue", "status", "created_at"),
        Index("ix_queue_messages_status_enqueued_at", "status", "enqueued_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    queue: Mapped[str] = mapped_column(String(200))
    handler: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state_machine: Mapped[str | None] = mapped_column(String(256), nullable=True)
    mode: Mapped[str] = mapped_column(String(8))
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(String(256), nullable=True)
    cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    task_token: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    execution_arn: Mapped[str | None] = mapped_column(String(512), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: When it was last handed to the broker (or is about to be, right after commit): a
    #: ``queued`` message older than the sweep grace is enqueued again.
    enqueued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
