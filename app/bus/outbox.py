"""Commit, then enqueue — and find what was committed but never enqueued.

Whoever creates delivery rows registers them with :func:`deliver_after_commit` on its session;
the unit of work (:mod:`app.db`) hands them to ``enqueue_deliveries`` once the transaction
committed, every delivery of one unit of work in one producer round trip. If the broker is down
at that moment the rows are still there: the sweeper (``sweep``), run by the scheduler,
re-enqueues every pending delivery that is due and that no worker picked up within the grace
period. A delivery enqueued twice is harmless: the delivery task claims the row first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.bus.models import Delivery
from app.celery_client import celery_for
from app.config import Settings
from app.db import after_commit, utcnow

log = logging.getLogger("smokehouse.bus")

DELIVER_TASK = "bus.deliver"
#: Deliveries one task message carries: one claim, one record, one Celery task for them all.
BATCH_SIZE = 50
SWEEP_BATCH = 500


def enqueue_deliveries(
    settings: Settings, delivery_ids: Sequence[str], countdown: float | None = None
) -> int:
    """Send the deliveries in batches of up to ``BATCH_SIZE`` per task message, all in one
    producer round trip; return how many deliveries were sent. Never raises: a failure to
    enqueue is logged and left to the sweeper."""
    sent = 0
    if not delivery_ids:
        return sent
    try:
        celery = celery_for(settings)
        with celery.producer_or_acquire() as producer:
            for start in range(0, len(delivery_ids), BATCH_SIZE):
                batch = list(delivery_ids[start : start + BATCH_SIZE])
                celery.send_task(
                    DELIVER_TASK,
                    args=[batch],
                    queue="bus",
                    countdown=countdown,
                    producer=producer,
                    retry=False,
                )
                sent += len(batch)
    except Exception as exc:  # broker down: the outbox sweeper will pick these up
        log.warning(
            "could not enqueue %d deliveries (%s); the sweeper will retry",
            len(delivery_ids) - sent,
            exc,
        )
    return sent


def deliver_after_commit(
    session: Session,
    settings: Settings,
    delivery_ids: Iterable[str],
    countdown: float | None = None,
) -> None:
    """Enqueue ``delivery_ids`` once ``session`` commits (nothing if it rolls back); every
    delivery registered in one unit of work goes out in one batch per countdown."""
    after_commit(session).batch(
        (DELIVER_TASK, settings, countdown), partial(_send, settings, countdown), delivery_ids
    )


def _send(settings: Settings, countdown: float | None, delivery_ids: list[str]) -> int:
    # ``enqueue_deliveries`` is looked up when the batch runs (tests replace it).
    if countdown is None:
        return enqueue_deliveries(settings, delivery_ids)
    return enqueue_deliveries(settings, delivery_ids, countdown=countdown)


def start_replay(settings: Settings, name: str) -> None:
    """Send the replay runner task; raises if the broker is down (StartReplay then fails)."""
    celery_for(settings).send_task("bus.replay", args=[name], queue="bus", retry=False)


def due_for_sweep(session: Session, now: datetime, grace: timedelta) -> list[str]:
    """Pending, due deliveries that no task will pick up: never enqueued (a retry whose delay was
    too long for a countdown), or enqueued more than ``grace`` ago and still not claimed."""
    stale = now - grace
    rows = session.scalars(
        select(Delivery.id)
        .where(
            Delivery.status == "pending",
            or_(
                and_(Delivery.enqueued_at.is_(None), Delivery.next_attempt_at <= now),
                and_(Delivery.enqueued_at <= stale, Delivery.next_attempt_at <= stale),
            ),
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until <= now),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(SWEEP_BATCH)
    )
    ids = list(rows)
    if ids:
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(enqueued_at=now))
    return ids


def sweep(settings: Settings) -> int:
    """One sweeper pass: mark and re-enqueue stragglers. Returns how many were enqueued."""
    from app.db import get_database

    with get_database(settings.sqlalchemy_url).session() as session:
        ids = due_for_sweep(session, utcnow(), timedelta(seconds=settings.bus_sweep_grace_seconds))
    if ids:
        log.info("sweeper re-enqueues %d deliveries", len(ids))
    return enqueue_deliveries(settings, ids)
