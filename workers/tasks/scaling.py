"""Scaling tasks: run a work-queue message's handler, and the autoscaler's periodic pass."""

from __future__ import annotations

from typing import Any

from app.handlers import HandlerContext, handlers
from workers.celery_app import celery_app, settings_of

HANDLE_TASK = "scaling.handle"


@celery_app.task(name=HANDLE_TASK, bind=True)
def handle(
    self: Any, handler_name: str | None = None, payload: Any = None, message_id: str | None = None
) -> Any:
    """One work-queue message (SQS → Lambda). With ``message_id``: the stored message (see
    :func:`app.scaling.messages.run`: result, failure and task token are recorded). Without:
    run the named handler with the payload, nothing stored. The task id is stable across
    redeliveries, so a handler can dedupe on ``invocation_id``."""
    if message_id is not None:
        from app.scaling import messages

        return messages.run(settings_of(celery_app), message_id)
    if handler_name is None:
        raise ValueError("scaling.handle needs a handler name or a message id")
    context = HandlerContext(
        name=handler_name,
        invocation_id=str(self.request.id),
        attempt=int(self.request.retries or 0) + 1,
        extra={"queue": (self.request.delivery_info or {}).get("routing_key")},
        settings=settings_of(celery_app),
    )
    return handlers.get(handler_name)(payload, context)


@celery_app.task(name="scaling.autoscale", ignore_result=True)
def autoscale() -> int:
    """One autoscaler pass (the scheduler sends this on an interval); returns queues passed.

    Skipped with the ``process`` backend: local workers must be children of the long-lived
    ``smokehouse scaling run`` loop, not of whichever worker ran this task."""
    from app.scaling.autoscaler import Autoscaler

    settings = settings_of(celery_app)
    if settings.scaling.backend == "process":
        return 0
    return len(Autoscaler.from_settings(settings).run_once())


@celery_app.task(name="scaling.sweep_messages", ignore_result=True)
def sweep_messages() -> int:
    """Enqueue again the work-queue messages the broker never delivered; returns how many."""
    from app.scaling import messages

    settings = settings_of(celery_app)
    return messages.sweep(settings, settings.scaling.message_sweep_grace_seconds)
