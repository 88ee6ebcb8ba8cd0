"""Workflow tasks: run a Task state, fire a timer, sweep, run an async Express execution.
Thin: the engine does it; every task is idempotent (claims and refs make a redelivery a no-op).

Shared tasks bound to whichever app runs them (``self.app``), so this module can be imported
while ``workers.celery_app`` itself is still importing (as a handler module does).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from app.db import get_database
from app.workflows import engine, express, machines
from app.workflows.asl import Start, event_from_dict
from app.workflows.sweep import sweep as sweep_once
from workers.celery_app import settings_of

log = logging.getLogger("smokehouse.workflows")


@shared_task(name="workflows.run_task", bind=True)
def run_task(self: Any, execution_id: int, ref: str) -> str:
    return engine.run_task(settings_of(self.app), execution_id, ref)


@shared_task(name="workflows.fire_timer", bind=True)
def fire_timer(self: Any, execution_id: int, ref: str) -> str:
    return engine.fire_timer(settings_of(self.app), execution_id, ref)


@shared_task(name="workflows.sweep", bind=True)
def sweep(self: Any) -> int:
    return sweep_once(settings_of(self.app))


@shared_task(name="workflows.run_express", bind=True)
def run_express(self: Any, payload: dict[str, Any]) -> str:
    settings = settings_of(self.app)
    with get_database(settings.sqlalchemy_url).session() as session:
        compiled = machines.compiled(session, payload["definition_hash"])
    start = event_from_dict(payload["start"])
    assert isinstance(start, Start)
    result = express.run(settings, compiled, start)
    log.info(
        "express execution %s: %s",
        start.execution_id,
        result.status,
        extra={"error": result.error, "cause": result.cause},
    )
    return result.status
