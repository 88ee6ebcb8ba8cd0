"""Bus tasks: deliver a batch, sweep the outbox, run a replay. Thin: the domain does it."""

from __future__ import annotations

from app.bus.delivery import deliver_batch
from app.bus.outbox import sweep as sweep_outbox
from app.bus.replay import run_replay
from workers.celery_app import celery_app, settings_of


@celery_app.task(name="bus.deliver")
def deliver(delivery_ids: list[str] | str) -> dict[str, str]:
    """A batch of deliveries (a single id is a message sent before batches, still honoured)."""
    ids = [delivery_ids] if isinstance(delivery_ids, str) else delivery_ids
    return deliver_batch(settings_of(celery_app), ids)


@celery_app.task(name="bus.sweep")
def sweep() -> int:
    return sweep_outbox(settings_of(celery_app))


@celery_app.task(name="bus.replay")
def replay(name: str) -> str:
    return run_replay(settings_of(celery_app), name)


@celery_app.task(name="bus.purge_archives")
def purge_archives() -> int:
    from app.bus.archives import purge_expired
    from app.db import get_database, utcnow

    with get_database(settings_of(celery_app).sqlalchemy_url).session() as session:
        return purge_expired(session, utcnow())
