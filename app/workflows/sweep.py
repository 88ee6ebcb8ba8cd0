"""The workflow sweeper (``workflows.sweep``, run by the scheduler every few seconds): find what
no worker will otherwise pick up, and send it again.

* a task sent but not claimed within the grace period (the message was lost), or claimed by a
  worker whose lease lapsed (it died mid-task);
* a timer that comes due within the countdown window but was never sent (it was far off when
  set), or one overdue by the grace period (its message was lost);
* a state machine in ``DELETING`` whose last execution has ended;
* a child execution a ``.sync`` task no longer waits on (the parent stopped, timed out or left
  the state) that the parent's worker did not stop: it is stopped now.

Sending twice is harmless: a task is claimed before it runs and a timer fires once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.config import Settings
from app.db import get_database, utcnow
from app.workflows import dispatch
from app.workflows.models import Execution, ExecutionTask, StateMachine
from app.workflows.store import ACTIVE, COUNTDOWN_LIMIT

log = logging.getLogger("smokehouse.workflows")

BATCH = 500


def _lost_tasks(session: Session, now: datetime, grace: timedelta) -> list[tuple[int, str]]:
    stale = now - grace
    not_recent = or_(ExecutionTask.enqueued_at.is_(None), ExecutionTask.enqueued_at < stale)
    rows = session.execute(
        select(ExecutionTask.execution_id, ExecutionTask.ref)
        .where(
            ExecutionTask.kind == "task",
            or_(
                and_(ExecutionTask.status == "scheduled", not_recent),
                and_(
                    ExecutionTask.status == "running",
                    ExecutionTask.claimed_until < now,
                    not_recent,
                ),
            ),
        )
        .limit(BATCH)
    ).all()
    return [(row[0], row[1]) for row in rows]


def _due_timers(
    session: Session, now: datetime, grace: timedelta
) -> list[tuple[int, str, datetime]]:
    window = now + timedelta(seconds=COUNTDOWN_LIMIT)
    rows = session.execute(
        select(ExecutionTask.execution_id, ExecutionTask.ref, ExecutionTask.due_at)
        .where(
            ExecutionTask.status == "scheduled",
            ExecutionTask.kind == "timer",
            or_(
                and_(ExecutionTask.enqueued_at.is_(None), ExecutionTask.due_at <= window),
                and_(ExecutionTask.enqueued_at.is_not(None), ExecutionTask.due_at < now - grace),
            ),
        )
        .order_by(ExecutionTask.due_at)
        .limit(BATCH)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def _mark(session: Session, refs: list[tuple[int, str]], now: datetime) -> None:
    for execution_id, ref in refs:
        session.execute(
            update(ExecutionTask)
            .where(ExecutionTask.execution_id == execution_id, ExecutionTask.ref == ref)
            .values(enqueued_at=now)
        )


def _finish_deleting(session: Session) -> int:
    running = exists().where(
        Execution.state_machine_id == StateMachine.id, Execution.status == "RUNNING"
    )
    ids = list(
        session.scalars(select(StateMachine.id).where(StateMachine.status == "DELETING", ~running))
    )
    for machine_id in ids:
        session.execute(delete(Execution).where(Execution.state_machine_id == machine_id))
        session.execute(delete(StateMachine).where(StateMachine.id == machine_id))
    return len(ids)


def _orphans(session: Session) -> list[int]:
    """Running children of ``.sync`` tasks whose task is no longer active."""
    task = aliased(ExecutionTask)
    waited_on = (
        exists()
        .where(
            task.execution_id == Execution.parent_id,
            task.ref == Execution.parent_ref,
            task.status.in_(ACTIVE),
        )
        .correlate(Execution)
    )
    return list(
        session.scalars(
            select(Execution.id)
            .where(
                Execution.status == "RUNNING",
                Execution.parent_wait.is_not(None),
                ~waited_on,
            )
            .limit(BATCH)
        )
    )


def sweep(settings: Settings, now: datetime | None = None) -> int:
    """One pass; returns how many tasks and timers were sent."""
    now = now or utcnow()
    grace = timedelta(seconds=settings.workflow_sweep_grace_seconds)
    with get_database(settings.sqlalchemy_url).session() as session:
        tasks = _lost_tasks(session, now, grace)
        timers = _due_timers(session, now, grace)
        _mark(session, tasks + [(t[0], t[1]) for t in timers], now)
        deleted = _finish_deleting(session)
        orphans = _orphans(session)
    if orphans:
        from app.workflows.engine import stop_executions  # the engine sends through dispatch

        log.info("workflow sweep: stopping %d orphaned child executions", len(orphans))
        stop_executions(settings, orphans)
    if tasks or timers or deleted:
        log.info(
            "workflow sweep: %d tasks, %d timers re-sent; %d state machines deleted",
            len(tasks),
            len(timers),
            deleted,
        )
    return dispatch.send(
        settings,
        tasks,
        [(e, ref, (due - now).total_seconds()) for e, ref, due in timers],
    )
