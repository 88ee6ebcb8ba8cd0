"""Celery, configured from Settings: the one configuration workers and producers share.

At-least-once by construction: ``acks_late`` (ack after the task ran),
``task_reject_on_worker_lost`` (a killed pool process puts its message back), prefetch 1 (a busy
worker hoards nothing). Tasks are idempotent, so a redelivery is harmless.

The task modules live in ``workers/`` and are named here by string (Celery imports them when a
worker starts), so building a producer's app imports no task code. ``WORKER_APP`` names the
worker's own app module the same way, for ``smokehouse worker`` and ``scheduler``.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import Celery
from kombu.entity import Queue

import app.broker.sqlite  # noqa: F401  (registers the smokehouse+sqlite:// broker scheme)
from app.broker.queues import QUEUES
from app.config import Settings, load_settings
from app.handlers import load_handler_modules

#: The worker's Celery app module: its import connects the worker-side signal hooks (the
#: registry's heartbeat, the heap freeze, the first ping), as ``celery -A workers.celery_app``.
WORKER_APP = "workers.celery_app"

TASK_MODULES = (
    "workers.tasks.system",
    "workers.tasks.bus",
    "workers.tasks.workflows",
    "workers.tasks.queues",
    "workers.tasks.scaling",
    "workers.tasks.runners",
    "workers.tasks.iot",
    "workers.tasks.iot_alarms",
)


def celery_config(settings: Settings) -> dict[str, Any]:
    broker_url = settings.celery_broker_url
    transport_options: dict[str, Any] = {"visibility_timeout": 3600}
    if broker_url.startswith(("smokehouse+sqlite", "sqla+")):
        transport_options["polling_interval"] = 0.2
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        # Our log handler writes to the current sys.stderr; Celery's redirection would make
        # that a logger that logs back into the same handler, and every record was dropped.
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "task_default_queue": "default",
        "task_queues": [Queue(name) for name in QUEUES],
        "task_routes": {
            "system.*": {"queue": "default"},
            "bus.*": {"queue": "bus"},
            "workflows.*": {"queue": "workflows"},
            "runners.*": {"queue": "runners"},
            "iot_alarms.*": {"queue": "iot"},
        },
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            name: {"task": task, "schedule": seconds, "args": ()}
            for name, (task, seconds) in BEAT_SCHEDULE.items()
        },
        # Only the scheduler holding the ``scheduler`` lease sends (app.broker.beat).
        "beat_scheduler": "app.broker.beat:LeasedScheduler",
    }


#: The scheduler's periodic tasks: entry name -> (task, interval in seconds).
BEAT_SCHEDULE: dict[str, tuple[str, float]] = {
    "system-ping": ("system.ping", 30.0),
    "bus-sweep": ("bus.sweep", 10.0),
    "bus-purge-archives": ("bus.purge_archives", 3600.0),
    "workflows-sweep": ("workflows.sweep", 5.0),
    "scaling-autoscale": ("scaling.autoscale", 10.0),
    "runners-reconcile": ("runners.reconcile", 60.0),
    "iot-close-idle-cooks": ("iot.close_idle_cooks", 60.0),
    "iot-purge": ("iot.purge", 3600.0),
    "iot-alarms-sweep-offline": ("iot_alarms.sweep_offline", 15.0),
    "scaling-sweep-messages": ("scaling.sweep_messages", 15.0),
}

#: Periodic tasks run one at a time under a lease (``app.broker.singleton``); the ping is not a
#: singleton: each one proves a path from a scheduler through the broker to a worker.
SINGLETON_TASKS = (frozenset(task for task, _ in BEAT_SCHEDULE.values()) - {"system.ping"}) | {
    "runners.pool"  # sent by reconcile and on demand, not by the beat: two passes never overlap
}


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    # Every task is made from SingletonTask (named by string: Celery imports it on first use).
    celery = Celery(
        "smokehouse", include=list(TASK_MODULES), task_cls="app.broker.singleton:SingletonTask"
    )
    celery.conf.update(celery_config(settings))
    celery.conf.smokehouse_settings = settings
    load_handler_modules(settings.handler_module_list)
    return celery


def node_name(worker_id: str | None, pid: int) -> str:
    """The worker's Celery node name, unique per process: ``<worker id>@<host>`` (Celery expands
    ``%h``). Celery's default, ``celery@<host>``, is the same for every worker on a machine, and
    RabbitMQ then refuses the second worker's exclusive remote-control queue
    (``celery@<host>.celery.pidbox``: RESOURCE_LOCKED), so that worker never consumes -- which
    is exactly what the process backend does when it runs several workers on one host."""
    return f"{worker_id or f'worker-{pid}'}@%h"


def on_host(node: str, hostname: str) -> bool:
    """Whether a Celery node name belongs to a worker on ``hostname``."""
    return node.rpartition("@")[2] == hostname


def load_worker_app() -> None:
    """Import the worker's app module by name before running a worker or the scheduler in this
    process: its signal hooks must be connected (the app layer does not import ``workers/``)."""
    importlib.import_module(WORKER_APP)


def settings_of(celery: Celery) -> Settings:
    """The Settings an app was made from (tasks read them from the app that runs them)."""
    settings: Settings = celery.conf.smokehouse_settings
    return settings
