"""Worker side of the registry: register at start, heartbeat, report state, say goodbye.

Connected to Celery's signals when imported (``workers.celery_app`` imports it), so every
``smokehouse worker`` (and ``celery -A workers.celery_app worker``) takes part:

* ``worker_init`` (main process, before the pool forks): shared counters for finished tasks and
  busy seconds, which the pool's child processes update from ``task_prerun``/``task_postrun``.
* ``worker_ready``: register under a unique id (``SMOKEHOUSE_WORKER_ID`` if the backend chose it)
  and start a daemon thread that heartbeats every ``SMOKEHOUSE_SCALING_HEARTBEAT_SECONDS``.
* Each heartbeat reads the main process's own bookkeeping (``celery.worker.state``): the
  requests it holds (reserved or running, each with its broker delivery tag and queue) and the
  running ones (busy vs idle, current task). The held tags are what the reaper puts back on the
  queue if this process dies.
* ``worker_shutting_down`` (SIGTERM: warm shutdown): state ``draining``, beaten at once.
* ``worker_shutdown``: the thread stops and the row says ``stopped``.

A heartbeat that fails (database briefly down) is logged and retried next interval; the worker
keeps working — the liveness window is several intervals long.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from typing import Any

from celery import signals

from app.db import get_database, utcnow
from app.scaling import registry

log = logging.getLogger("smokehouse.scaling.worker")


class WorkerReporter:
    """This process's registry identity and its heartbeat thread."""

    def __init__(self) -> None:
        self.info: registry.WorkerInfo | None = None
        self.database_url: str | None = None
        self.interval = 5.0
        self.draining = False
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        # Created in worker_init (before the pool forks), shared with the pool's children.
        self.done: Any = None
        self.busy: Any = None
        self.started: dict[str, float] = {}  # per child process: task id → monotonic start

    def init_counters(self) -> None:
        self.done = multiprocessing.Value("q", 0)
        self.busy = multiprocessing.Value("d", 0.0)

    def heartbeat(self) -> registry.Heartbeat:
        from celery.worker import state

        held: list[registry.HeldMessage] = []
        for request in list(state.requests.values()):
            message = request.message
            info = request.delivery_info or {}
            queue = str(info.get("routing_key") or "")
            if message is not None and message.delivery_tag is not None:
                held.append(registry.HeldMessage(str(message.delivery_tag), queue, request.id))
        running = list(state.active_requests)
        status = "draining" if self.draining else "busy" if running else "idle"
        current = f"{running[0].name}[{running[0].id}]" if running else None
        return registry.Heartbeat(
            state=status,
            current_task=current,
            active=len(running),
            held=held,
            tasks_done=int(self.done.value) if self.done is not None else 0,
            busy_seconds=float(self.busy.value) if self.busy is not None else 0.0,
        )

    def beat(self) -> None:
        if self.info is None or self.database_url is None:
            return
        try:
            with get_database(self.database_url).session() as session:
                registry.heartbeat(session, self.info, self.heartbeat(), utcnow())
        except Exception as exc:  # keep working; the next beat may succeed
            log.warning("heartbeat failed: %s", exc)

    def run(self) -> None:
        while not self.stop.is_set():
            self.beat()
            self.wake.wait(self.interval)
            self.wake.clear()

    def start(self, app: Any, hostname: str, queues: list[str], concurrency: int) -> None:
        settings = app.conf.smokehouse_settings
        self.interval = settings.scaling.heartbeat_seconds
        self.database_url = settings.sqlalchemy_url
        self.info = registry.WorkerInfo.of(settings.worker, queues, concurrency)
        with get_database(self.database_url).session() as session:
            registry.register(session, self.info, utcnow())
        log.info("registered worker %s on %s", self.info.id, ",".join(queues))
        self.thread = threading.Thread(target=self.run, name="registry-heartbeat", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.beat()  # the final counters (tasks finished while draining)
        if self.info is not None and self.database_url is not None:
            try:
                with get_database(self.database_url).session() as session:
                    registry.mark_stopped(session, self.info.id, utcnow())
            except Exception as exc:
                log.warning("could not mark worker stopped: %s", exc)


reporter = WorkerReporter()


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    reporter.init_counters()


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    consumer = sender
    queues = sorted(consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues)
    concurrency = int(getattr(consumer.controller, "concurrency", 0) or 1)
    try:
        reporter.start(consumer.app, consumer.hostname, queues, concurrency)
    except Exception as exc:  # a registry problem must not stop the worker from working
        log.warning("worker registry unavailable: %s", exc)


def _on_shutting_down(**_: Any) -> None:
    reporter.draining = True  # runs in a signal handler: flag and wake, nothing more
    reporter.wake.set()


def _on_worker_shutdown(**_: Any) -> None:
    reporter.shutdown()


def _on_task_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        reporter.started[task_id] = time.monotonic()


def _on_task_postrun(task_id: str | None = None, **_: Any) -> None:
    started = reporter.started.pop(task_id, None) if task_id is not None else None
    if started is None or reporter.done is None:
        return
    with reporter.done.get_lock():
        reporter.done.value += 1
    with reporter.busy.get_lock():
        reporter.busy.value += time.monotonic() - started


def install() -> None:
    """Connect the handlers (idempotent: Celery dedupes receivers by identity)."""
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)


install()
