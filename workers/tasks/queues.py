"""Work-queue tasks (SQS → Lambda): run a message, and sweep the ones the broker never delivered.

The task names keep their ``scaling.`` prefix: producers (rules with
``arn:smokehouse:celery:<queue>:scaling.handle`` targets, scripts) name them on the wire.
"""

from __future__ import annotations

from typing import Any

from app.handlers import HandlerContext, handlers
from app.queues import messages
from workers.celery_app import celery_app, settings_of


@celery_app.task(name=messages.HANDLE_TASK, bind=True)
def handle(
    self: Any, handler_name: str | None = None, payload: Any = None, message_id: str | None = None
) -> Any:
    """One work-queue message (SQS → Lambda). With ``message_id``: the stored message (see
    :func:`app.queues.messages.run`: result, failure and task token are recorded). Without:
    run the named handler with the payload, nothing stored. The task id is stable across
    redeliveries, so a handler can dedupe on ``invocation_id``."""
    if message_id is not None:
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


@celery_app.task(name="scaling.sweep_messages", ignore_result=True)
def sweep_messages() -> int:
    """Enqueue again the work-queue messages the broker never delivered; returns how many."""
    settings = settings_of(celery_app)
    return messages.sweep(settings, settings.scaling.message_sweep_grace_seconds)
