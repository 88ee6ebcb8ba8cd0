"""The workers' Celery application: the app's configuration plus the worker-side hooks.

The configuration, queue names and task-module list live in :mod:`app.broker.celery`; this
module adds what only a worker or the scheduler needs (the registry's signal hooks, the heap
freeze, the scheduler's first ping) and the module-level app that ``celery -A
workers.celery_app worker`` loads, as ``smokehouse worker`` does.
"""

from __future__ import annotations

from typing import Any

from celery import signals

import app.wiring  # noqa: F401  (domains plug into each other's registries)
import workers.registry_hooks  # noqa: F401  (worker registry: register, heartbeat, drain)
from app.broker.celery import celery_config as celery_config
from app.broker.celery import create_celery as create_celery
from app.broker.celery import settings_of as settings_of
from app.broker.queues import QUEUES as QUEUES
from app.heap import freeze_startup_heap


def ping_when_the_scheduler_starts(sender: Any, **_: Any) -> None:
    """Beat first runs an interval task one interval after it starts; without this a fresh
    system would show no worker ping for 30 s, which reads as "workers are broken"."""
    sender.app.send_task("system.ping")


signals.beat_init.connect(ping_when_the_scheduler_starts, weak=False)
signals.worker_init.connect(lambda **_: freeze_startup_heap(), weak=False)

celery_app = create_celery()
