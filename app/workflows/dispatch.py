"""Commit, then enqueue: send what a committed step asked for to the broker.

A step registers its sends on its session with :func:`send_after_commit` (the unit of work in
:mod:`app.db` runs them once the step committed, never if it rolled back);
:func:`after_commit` sends at once, for callers that already committed.

Tasks go to ``workflows.run_task``; timers due within :data:`~app.workflows.store.COUNTDOWN_LIMIT`
go to ``workflows.fire_timer`` with a countdown (a Wait or a retry backoff never holds a worker);
later timers stay in the table until the sweeper sends them. Nothing here raises: if the broker
is down the rows are committed, and the sweeper (``workflows.sweep``) sends them later.

Activity tasks never go to the broker: :func:`send_after_commit` hands them to
:func:`app.workflows.activities.offer.offer`, which, in the step's transaction, makes them
available to ``GetActivityTask`` pollers (no smokehouse worker waits on them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.bus.outbox import deliver_after_commit, enqueue_deliveries
from app.celery_client import celery_for
from app.config import Settings
from app.db import after_commit as unit_of_work
from app.db import utcnow
from app.workflows.activities.offer import offer
from app.workflows.asl import ScheduleTask, StartTimer

log = logging.getLogger("smokehouse.workflows")

QUEUE = "workflows"
RUN_TASK = "workflows.run_task"
FIRE_TIMER = "workflows.fire_timer"
RUN_EXPRESS = "workflows.run_express"


def send(
    settings: Settings,
    tasks: Sequence[tuple[int, str]] = (),
    timers: Sequence[tuple[int, str, float]] = (),
) -> int:
    """Send ``(execution_id, ref)`` tasks and ``(execution_id, ref, countdown)`` timers."""
    sent = 0
    if not tasks and not timers:
        return sent
    try:
        celery = celery_for(settings)
        with celery.producer_or_acquire() as producer:
            for execution_id, ref in tasks:
                celery.send_task(
                    RUN_TASK, args=[execution_id, ref], queue=QUEUE, producer=producer, retry=False
                )
                sent += 1
            for execution_id, ref, countdown in timers:
                celery.send_task(
                    FIRE_TIMER,
                    args=[execution_id, ref],
                    queue=QUEUE,
                    countdown=countdown if countdown > 0 else None,
                    producer=producer,
                    retry=False,
                )
                sent += 1
    except Exception as exc:  # broker down: the rows are committed, the sweeper resends
        log.warning("could not enqueue %d workflow messages (%s)", len(tasks) + len(timers), exc)
    return sent


def after_commit(
    settings: Settings,
    execution_id: int,
    tasks: Sequence[ScheduleTask],
    timers: Sequence[StartTimer],
    deliveries: Sequence[str],
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    send(
        settings,
        [(execution_id, t.ref) for t in tasks],
        [(execution_id, t.ref, (t.fire_at_datetime - now).total_seconds()) for t in timers],
    )
    if deliveries:
        enqueue_deliveries(settings, list(deliveries))


def send_after_commit(
    session: Session,
    settings: Settings,
    execution_id: int,
    tasks: Sequence[ScheduleTask],
    timers: Sequence[StartTimer],
    deliveries: Sequence[str] = (),
    now: datetime | None = None,
) -> None:
    """Register :func:`after_commit`'s sends on ``session``: they leave once it commits. Called
    inside the step's transaction, which also makes its activity tasks available to pollers."""
    if tasks:
        tasks = offer(session, settings, execution_id, tasks, now or utcnow())
    if tasks or timers:
        unit_of_work(session).call(
            _send_step, settings, execution_id, list(tasks), list(timers), now
        )
    deliver_after_commit(session, settings, deliveries)


def _send_step(
    settings: Settings,
    execution_id: int,
    tasks: list[ScheduleTask],
    timers: list[StartTimer],
    now: datetime | None,
) -> None:
    now = now or utcnow()
    send(
        settings,
        [(execution_id, t.ref) for t in tasks],
        [(execution_id, t.ref, (t.fire_at_datetime - now).total_seconds()) for t in timers],
    )


def send_express(settings: Settings, payload: dict[str, Any]) -> None:
    """Run an asynchronous Express execution on a worker (at least once, as on AWS)."""
    celery_for(settings).send_task(RUN_EXPRESS, args=[payload], queue=QUEUE, retry=False)
