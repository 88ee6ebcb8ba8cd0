"""Thermometer housekeeping the scheduler runs: close silent cooks, purge old readings."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task

from app.db import get_database, utcnow
from app.iot import cooks, readings
from workers.celery_app import settings_of

log = logging.getLogger("smokehouse.iot")

#: Rounds of ``purge_batch`` per run: a backlog is worked off over several runs, never in one.
MAX_PURGE_ROUNDS = 50


@shared_task(name="iot.close_idle_cooks", bind=True)
def close_idle_cooks(self: Any) -> int:
    settings = settings_of(self.app)
    idle = timedelta(seconds=settings.iot.cook_idle_seconds)
    with get_database(settings.sqlalchemy_url).session() as session:
        closed = cooks.close_idle(session, utcnow(), idle)
    if closed:
        log.info("closed %d cooks after %s without data", closed, idle)
    return closed


@shared_task(name="iot.purge", bind=True)
def purge(self: Any) -> dict[str, int]:
    settings = settings_of(self.app)
    iot = settings.iot
    database = get_database(settings.sqlalchemy_url)
    total: dict[str, int] = {}
    for _ in range(MAX_PURGE_ROUNDS):
        with database.session() as session:
            removed = readings.purge_batch(session, utcnow(), iot.retention_days, iot.purge_batch)
        for key, count in removed.items():
            total[key] = total.get(key, 0) + count
        if max(removed.values()) < iot.purge_batch:
            break
    if any(total.values()):
        log.info("purged old thermometer data: %s", total)
    return total
