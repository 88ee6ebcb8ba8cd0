"""``arn:smokehouse:celery:<queue>:<task name>``: put a task message on a Celery work queue.

smokehouse's SQS target: a rule hands work to whatever worker consumes ``<queue>`` and runs
``<task name>`` (for example ``arn:smokehouse:celery:default:system.ping``). The task gets one
argument, the rendered input (parsed JSON; the text itself when a text template made it not
JSON). The Celery task id is the delivery id, so a redelivered attempt carries the same id and a
consumer can drop the duplicate — Celery, like SQS, is at-least-once.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from app.broker.queues import QUEUES
from app.bus.targets.base import DeliveryContext, TargetFailure
from app.config import Settings

if TYPE_CHECKING:
    from celery import Celery

PREFIX = "arn:smokehouse:celery:"
# Celery task names are dotted identifiers in practice; keep them printable and colon-free-start.
TASK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,254}$")

FAIL_FAST = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

_apps: dict[Settings, Celery] = {}
_apps_lock = threading.Lock()


def parse_arn(arn: str) -> tuple[str, str] | None:
    """``arn:smokehouse:celery:default:system.ping`` → ("default", "system.ping")."""
    if not arn.startswith(PREFIX):
        return None
    queue, _, task = arn.removeprefix(PREFIX).partition(":")
    if not queue or not task:
        return None
    return queue, task


def celery_for(settings: Settings) -> Celery:
    """One Celery app (and so one broker connection pool) per settings in this process."""
    with _apps_lock:
        app = _apps.get(settings)
        if app is None:
            from app.broker.celery import create_celery  # lazily: it loads Celery

            app = create_celery(settings)
            # Fail fast when the broker is down (kombu would retry for seconds): the delivery's
            # own retry policy, with backoff, decides when to try again.
            app.conf.broker_transport_options = {
                **app.conf.broker_transport_options,
                **FAIL_FAST,
            }
            _apps[settings] = app
        return app


class CeleryQueueTarget:
    kind = "celery"

    def accepts(self, arn: str) -> bool:
        return arn.startswith(PREFIX)

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        parsed = parse_arn(spec["Arn"])
        if parsed is None:
            return (
                f"Target ARN {spec['Arn']} is not valid: use arn:smokehouse:celery:<queue>:<task>."
            )
        queue, task = parsed
        if queue not in QUEUES:
            return f"Celery queue {queue!r} does not exist; use one of: {', '.join(QUEUES)}."
        if not TASK_NAME.match(task):
            return f"Celery task name {task!r} is not valid."
        return None

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        parsed = parse_arn(context.spec["Arn"])
        if parsed is None:
            raise TargetFailure(
                f"not a Celery queue ARN: {context.spec['Arn']}", retryable=False, code="BadArn"
            )
        queue, task = parsed
        try:
            argument: Any = json.loads(payload)
        except ValueError:
            argument = payload  # a text InputTemplate renders text, not JSON
        try:
            celery_for(context.settings).send_task(
                task,
                args=[argument],
                queue=queue,
                task_id=context.delivery_id,
                retry=False,
            )
        except Exception as exc:  # broker unreachable, connection reset: try again later
            raise TargetFailure(
                f"could not send task {task} to queue {queue}: {type(exc).__name__}: {exc}",
                retryable=True,
                code="BrokerError",
            ) from exc
        return None
