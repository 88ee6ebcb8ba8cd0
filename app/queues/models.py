"""One queue system: the work-queue messages table, whose rows are also the messages of the
SQS-compatible queues, and the SQS queues' own tables (queues, FIFO deduplication, move tasks).

A work-queue message (``mode`` ``sync``/``async``) is pushed to a Celery worker and records how
it ended; an SQS message (``mode`` ``pull``) waits in its queue until a consumer receives it,
is invisible until ``visible_at`` while in flight, and is deleted by the consumer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Index,
    Integer,
    String,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

MESSAGE_MODES = ("sync", "async")
#: An SQS message: nobody runs it, a consumer receives and deletes it.
PULL = "pull"
MESSAGE_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "dead")
#: ``dead``: received more than its queue's cap (``SMOKEHOUSE_QUEUES_MAX_RECEIVE_COUNT``)
#: without finishing -- it kept killing its worker; never run again unless redriven.
FINISHED = ("succeeded", "failed", "dead")


def is_pull(mode: Any) -> ColumnElement[bool]:
    """``mode = 'pull'`` with the value in the SQL text, not a bound parameter: only then can a
    prepared statement's generic plan (psycopg prepares a statement on its fifth run) use the
    partial index ``ix_queue_messages_pull_visible_at``. With a parameter, receives fell back
    to a whole-queue scan after their fifth call (5.8 ms instead of 0.2 ms at 20,000)."""
    return mode == literal_column(f"'{PULL}'")  # type: ignore[no-any-return]


class QueueMessage(Base):
    """One work-queue message: what to run (a handler or a state machine), how (``sync`` waits
    for the handler's result, ``async`` waits for a task-token callback) and how it ended."""

    __tablename__ = "queue_messages"
    __table_args__ = (
        Index("ix_queue_messages_queue_status_created_at", "queue", "status", "created_at"),
        Index("ix_queue_messages_status_enqueued_at", "status", "enqueued_at"),
        # SQS receives (see migration 0017: the partial index keeps their plan whatever the
        # statistics say)
        Index(
            "ix_queue_messages_pull_visible_at",
            "queue",
            "visible_at",
            postgresql_where=text("mode = 'pull'"),
            sqlite_where=text("mode = 'pull'"),
        ),
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
    # --- SQS messages (mode ``pull``) ---
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_attributes: Mapped[Any] = mapped_column(JSON, nullable=True)
    system_attributes: Mapped[Any] = mapped_column(JSON, nullable=True)
    md5_body: Mapped[str | None] = mapped_column(String(32), nullable=True)
    md5_attributes: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Receivable from then on: the send's delay, or the end of the current receive's
    #: visibility timeout (``attempts`` counts the receives).
    visible_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    #: The current receive's handle; an older receive's handle no longer changes the message.
    receipt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    group_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dedup_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    sequence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: The queue a dead-lettered message came from (what a move task moves it back to).
    source_queue: Mapped[str | None] = mapped_column(String(80), nullable=True)


class SqsQueue(Base):
    """An SQS-compatible queue: its attributes as SQS reports them (strings), its tags, and
    the FIFO sequence counter."""

    __tablename__ = "sqs_queues"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    fifo: Mapped[bool] = mapped_column(Boolean, default=False)
    attributes: Mapped[dict[str, str]] = mapped_column(JSON)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class SqsDeduplication(Base):
    """A FIFO queue's deduplication id, remembered for 5 minutes: a send with the same id in
    that window is accepted and answered with the first message's id, and stores nothing."""

    __tablename__ = "sqs_deduplication"

    queue: Mapped[str] = mapped_column(String(80), primary_key=True)
    dedup_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36))
    sequence: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SqsMoveTask(Base):
    """A ``StartMessageMoveTask``: messages of a dead-letter queue moved back to their source
    queue (or to ``destination``)."""

    __tablename__ = "sqs_move_tasks"

    handle: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(80), index=True)
    destination: Mapped[str | None] = mapped_column(String(80), nullable=True)
    max_per_second: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    moved: Mapped[int] = mapped_column(Integer, default=0)
    to_move: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
