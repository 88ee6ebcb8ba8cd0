"""``scaling``: the worker registry, each autoscaled queue's state, the decisions log
(queried, or followed live by polling; see :mod:`app.graphql.subscriptions`), and work-queue
messages (``sendMessage`` stores one, commits, then enqueues it)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any, TypeVar

import strawberry
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from strawberry.scalars import JSON
from strawberry.types import Info

from app.db import utcnow
from app.graphql.context import CanWrite, Context, IsAuthenticated, in_session
from app.graphql.subscriptions import watch
from app.queues import messages
from app.queues.models import QueueMessage as QueueMessageRow
from app.scaling import models

T = TypeVar("T")
MAX_LIMIT = 500
#: How far back each poll re-reads decisions (one stamped before a slow commit).
OVERLAP_SECONDS = 5.0


@strawberry.type
class Worker:
    id: str
    hostname: str
    queues: list[str]
    concurrency: int
    backend: str
    state: str = strawberry.field(description="starting, idle, busy, draining, stopped or dead")
    alive: bool = strawberry.field(description="Heartbeat younger than the liveness window.")
    current_task: str | None
    active: int
    held: int = strawberry.field(description="Broker messages taken and not yet acked.")
    tasks_done: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


@strawberry.type
class ScalingDecision:
    id: str
    queue: str
    decided_at: datetime
    previous: int
    desired: int
    recommendation: int
    queued: int
    reserved: int
    running: int
    live_workers: int
    busy_workers: int
    reason: str
    backend: str
    error: str | None


@strawberry.type
class WorkQueue:
    name: str
    desired: int
    updated_at: datetime


def _worker(row: models.ScalingWorker, now: datetime, liveness: timedelta) -> Worker:
    alive = row.state in ("starting", "idle", "busy", "draining") and (
        row.heartbeat_at > now - liveness
    )
    return Worker(
        id=row.id,
        hostname=row.hostname,
        queues=list(row.queues),
        concurrency=row.concurrency,
        backend=row.backend,
        state=row.state,
        alive=alive,
        current_task=row.current_task,
        active=row.active,
        held=len(row.held or []),
        tasks_done=row.tasks_done,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        stopped_at=row.stopped_at,
    )


def _decision(r: models.ScalingDecision) -> ScalingDecision:
    return ScalingDecision(
        id=r.id,
        queue=r.queue,
        decided_at=r.decided_at,
        previous=r.previous,
        desired=r.desired,
        recommendation=r.recommendation,
        queued=r.queued,
        reserved=r.reserved,
        running=r.running,
        live_workers=r.live_workers,
        busy_workers=r.busy_workers,
        reason=r.reason,
        backend=r.backend,
        error=r.error,
    )


async def resolve_workers(
    info: Info[Context, Any], queue: str | None = None, include_gone: bool = False
) -> list[Worker]:
    """Workers newest first; only live ones unless ``includeGone``."""
    liveness = timedelta(seconds=info.context.settings.scaling.liveness_seconds)
    now = utcnow()

    def work(session: Session) -> list[Worker]:
        rows = session.scalars(
            select(models.ScalingWorker).order_by(models.ScalingWorker.started_at.desc())
        )
        found = [_worker(r, now, liveness) for r in rows if queue is None or queue in r.queues]
        return found if include_gone else [w for w in found if w.alive]

    return await in_session(info.context.settings, work)


async def resolve_decisions(
    info: Info[Context, Any], queue: str | None = None, limit: int = 50
) -> list[ScalingDecision]:
    """Scaling decisions, newest first."""

    def work(session: Session) -> list[ScalingDecision]:
        query = select(models.ScalingDecision).order_by(models.ScalingDecision.decided_at.desc())
        if queue is not None:
            query = query.where(models.ScalingDecision.queue == queue)
        rows = session.scalars(query.limit(max(1, min(limit, MAX_LIMIT))))
        return [_decision(r) for r in rows]

    return await in_session(info.context.settings, work)


async def resolve_work_queues(info: Info[Context, Any]) -> list[WorkQueue]:
    def work(session: Session) -> list[WorkQueue]:
        rows = session.scalars(select(models.ScalingQueue).order_by(models.ScalingQueue.name))
        return [WorkQueue(name=r.name, desired=r.desired, updated_at=r.updated_at) for r in rows]

    return await in_session(info.context.settings, work)


@strawberry.type
class QueueMessage:
    id: str
    queue: str
    handler: str | None
    state_machine: str | None
    mode: str
    status: str
    payload: JSON | None
    body: str | None = strawberry.field(description="An SQS message's body (mode pull).")
    visible_at: datetime | None = strawberry.field(
        description="An SQS message is received again (or first) from then on."
    )
    result: JSON | None
    error: str | None
    cause: str | None
    task_token: str | None
    execution_arn: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _message(r: QueueMessageRow) -> QueueMessage:
    return QueueMessage(
        id=r.id,
        queue=r.queue,
        handler=r.handler,
        state_machine=r.state_machine,
        mode=r.mode,
        status=r.status,
        payload=r.payload,
        body=r.body,
        visible_at=r.visible_at,
        result=r.result,
        error=r.error,
        cause=r.cause,
        task_token=r.task_token,
        execution_arn=r.execution_arn,
        attempts=r.attempts,
        created_at=r.created_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
    )


async def resolve_queue_messages(
    info: Info[Context, Any], queue: str | None = None, status: str | None = None, limit: int = 50
) -> list[QueueMessage]:
    """Work-queue messages, newest first."""

    def work(session: Session) -> list[QueueMessage]:
        try:
            rows = messages.list_messages(session, queue, status, limit)
        except messages.MessageError as exc:
            raise ValueError(exc.reason) from None
        return [_message(r) for r in rows]

    return await in_session(info.context.settings, work)


async def resolve_queue_message(info: Info[Context, Any], id: str) -> QueueMessage | None:
    def work(session: Session) -> QueueMessage | None:
        row = session.get(QueueMessageRow, id)
        return None if row is None else _message(row)

    return await in_session(info.context.settings, work)


async def resolve_send_message(
    info: Info[Context, Any],
    queue: str,
    handler: str | None = None,
    state_machine: str | None = None,
    payload: JSON | None = None,
    mode: str = "sync",
) -> QueueMessage:
    """Store a message for a handler (``sync``/``async``) or a state machine, then enqueue it."""
    settings = info.context.settings
    try:
        [message_id] = await run_in_threadpool(
            lambda: messages.send_and_enqueue(
                settings,
                queue,
                handler=handler,
                state_machine=state_machine,
                payload=payload,
                mode=mode,
            )
        )
    except messages.MessageError as exc:
        raise ValueError(exc.reason) from None
    found = await resolve_queue_message(info, message_id)
    assert found is not None  # committed by send_and_enqueue
    return found


async def resolve_redrive_queue_message(info: Info[Context, Any], id: str) -> QueueMessage:
    """Queue a dead-lettered message again with a fresh receive budget (only ``dead`` ones)."""
    settings = info.context.settings

    def work(session: Session) -> QueueMessage:
        try:
            return _message(messages.redrive(session, settings, id, utcnow()))
        except messages.MessageError as exc:
            raise ValueError(exc.reason) from None

    return await in_session(settings, work)


@strawberry.type
class ScalingMutation:
    send_message: QueueMessage = strawberry.field(
        resolver=resolve_send_message, permission_classes=[CanWrite]
    )
    redrive_queue_message: QueueMessage = strawberry.field(
        resolver=resolve_redrive_queue_message, permission_classes=[CanWrite]
    )


@strawberry.type
class ScalingQuery:
    workers: list[Worker] = strawberry.field(
        resolver=resolve_workers, permission_classes=[IsAuthenticated]
    )
    scaling_decisions: list[ScalingDecision] = strawberry.field(
        resolver=resolve_decisions, permission_classes=[IsAuthenticated]
    )
    work_queues: list[WorkQueue] = strawberry.field(
        resolver=resolve_work_queues,
        permission_classes=[IsAuthenticated],
        description="Autoscaled queues and their current desired worker count.",
    )
    queue_messages: list[QueueMessage] = strawberry.field(
        resolver=resolve_queue_messages, permission_classes=[IsAuthenticated]
    )
    queue_message: QueueMessage | None = strawberry.field(
        resolver=resolve_queue_message, permission_classes=[IsAuthenticated]
    )


# --- subscriptions ------------------------------------------------------------------------


class DecisionPoller:
    """New decisions by ``decided_at``. The autoscaler stamps a decision before it commits, so
    each poll re-reads the last :data:`OVERLAP_SECONDS` and skips the ids already sent: one
    that commits late is still reported, once."""

    def __init__(self, queue: str | None) -> None:
        self.queue = queue
        self.done = False
        self.watermark = utcnow()
        self.sent: dict[str, datetime] = {}

    def _since(self, session: Session) -> list[models.ScalingDecision]:
        since = self.watermark - timedelta(seconds=OVERLAP_SECONDS)
        query = select(models.ScalingDecision).where(models.ScalingDecision.decided_at > since)
        if self.queue is not None:
            query = query.where(models.ScalingDecision.queue == self.queue)
        rows = session.scalars(query.order_by(models.ScalingDecision.decided_at))
        return [r for r in rows if r.id not in self.sent]

    def _remember(self, rows: list[models.ScalingDecision]) -> None:
        for row in rows:
            self.sent[row.id] = row.decided_at
            self.watermark = max(self.watermark, row.decided_at)
        horizon = self.watermark - timedelta(seconds=OVERLAP_SECONDS)
        self.sent = {k: at for k, at in self.sent.items() if at > horizon}

    def baseline(self, session: Session) -> None:
        self._remember(self._since(session))

    def changes(self, session: Session) -> list[ScalingDecision]:
        rows = self._since(session)
        self._remember(rows)
        return [_decision(r) for r in rows]


async def subscribe_decisions(
    info: Info[Context, Any], queue: str | None = None
) -> AsyncGenerator[ScalingDecision, None]:
    """Each new scaling decision (of one queue, or all), oldest first."""
    poller = DecisionPoller(queue)
    async with aclosing(watch(info.context.settings, "scalingDecisions", poller)) as stream:
        async for decision in stream:
            yield decision


@strawberry.type
class ScalingSubscription:
    scaling_decisions: AsyncGenerator[ScalingDecision, None] = strawberry.subscription(
        resolver=subscribe_decisions, permission_classes=[IsAuthenticated]
    )
