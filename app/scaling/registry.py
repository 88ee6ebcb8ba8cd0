"""The worker registry: who is running, what each holds, and who went silent.

Every worker registers under a unique id when it starts and heartbeats on an interval with its
state (starting, idle, busy, draining, stopped), its current task and the broker messages it holds.
A worker is *alive* while its heartbeat is younger than the liveness window. ``reap`` marks the
silent ones dead and returns what they held, so the caller can put those messages back on their
queues at once (see ``app.scaling.recovery``) rather than after the broker's visibility timeout.

Services take a session and never commit; the caller's unit of work does.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import WorkerSettings
from app.scaling.models import ScalingWorker

LIVE_STATES = ("starting", "idle", "busy", "draining")


def new_worker_id(worker: WorkerSettings) -> str:
    """``<host>-<pid>-<random>``: readable in logs, unique across restarts and machines.
    A backend that starts the worker may choose the id itself (``SMOKEHOUSE_WORKER_ID``)."""
    if worker.id:
        return worker.id
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A broker message a worker has taken but not acked (reserved or running)."""

    tag: str
    queue: str
    task_id: str

    def to_json(self) -> dict[str, str]:
        return {"tag": self.tag, "queue": self.queue, "task_id": self.task_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldMessage:
        return cls(str(data["tag"]), str(data["queue"]), str(data.get("task_id", "")))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    state: str
    current_task: str | None = None
    active: int = 0
    held: Sequence[HeldMessage] = ()
    tasks_done: int = 0
    busy_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    queues: Sequence[str]
    concurrency: int
    hostname: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    backend: str = ""
    backend_ref: str | None = None

    @classmethod
    def of(cls, worker: WorkerSettings, queues: Sequence[str], concurrency: int) -> WorkerInfo:
        """This process, as ``settings.worker`` says its backend started it."""
        return cls(
            id=new_worker_id(worker),
            queues=queues,
            concurrency=concurrency,
            backend=worker.backend,
            backend_ref=worker.backend_ref,
        )


def register(session: Session, info: WorkerInfo, now: datetime) -> ScalingWorker:
    """Insert (or revive) the worker's row in state ``starting``."""
    worker = session.get(ScalingWorker, info.id)
    if worker is None:
        worker = ScalingWorker(id=info.id, started_at=now)
        session.add(worker)
    worker.hostname = info.hostname[:255]
    worker.pid = info.pid
    worker.queues = list(info.queues)
    worker.concurrency = info.concurrency
    # A backend that pre-registered the worker knows its reference (pid, container); keep it.
    worker.backend = info.backend or worker.backend or "external"
    worker.backend_ref = info.backend_ref or worker.backend_ref
    worker.state = "starting"
    worker.current_task = None
    worker.active = 0
    worker.held = []
    worker.tasks_done = 0
    worker.busy_seconds = 0.0
    worker.heartbeat_at = now
    worker.stopped_at = None
    session.flush()
    return worker


def heartbeat(session: Session, info: WorkerInfo, beat: Heartbeat, now: datetime) -> ScalingWorker:
    """Record a heartbeat. A worker reaped by mistake (a long pause) comes back to life: its
    messages may have been redelivered meanwhile, which idempotent tasks tolerate."""
    worker = session.get(ScalingWorker, info.id)
    if worker is None or worker.state in ("dead", "stopped"):
        worker = register(session, info, now)
    worker.state = beat.state
    worker.current_task = beat.current_task[:255] if beat.current_task else None
    worker.active = beat.active
    worker.held = [m.to_json() for m in beat.held]
    worker.tasks_done = beat.tasks_done
    worker.busy_seconds = beat.busy_seconds
    worker.heartbeat_at = now
    return worker


def mark_stopped(session: Session, worker_id: str, now: datetime) -> None:
    """A clean stop: the worker acked or returned everything it held."""
    worker = session.get(ScalingWorker, worker_id)
    if worker is not None:
        worker.state = "stopped"
        worker.held = []
        worker.active = 0
        worker.current_task = None
        worker.stopped_at = now


def live_workers(
    session: Session, now: datetime, liveness: timedelta, queue: str | None = None
) -> list[ScalingWorker]:
    """Workers whose heartbeat is fresh, optionally only those consuming ``queue``."""
    rows = session.scalars(
        select(ScalingWorker)
        .where(ScalingWorker.state.in_(LIVE_STATES), ScalingWorker.heartbeat_at > now - liveness)
        .order_by(ScalingWorker.started_at, ScalingWorker.id)
    ).all()
    return [w for w in rows if queue is None or queue in w.queues]


def reap(session: Session, now: datetime, liveness: timedelta) -> list[ScalingWorker]:
    """Mark workers silent for longer than ``liveness`` as dead; return them with what they held
    (``held`` is kept on the row, so a crash between reap and restore is retried next pass)."""
    rows = session.scalars(
        select(ScalingWorker)
        .where(ScalingWorker.state.in_(LIVE_STATES), ScalingWorker.heartbeat_at <= now - liveness)
        .with_for_update(skip_locked=True)
    ).all()
    for worker in rows:
        worker.state = "dead"
        worker.stopped_at = now
        worker.current_task = None
    return list(rows)


def unrestored(session: Session) -> list[ScalingWorker]:
    """Dead workers whose held messages were not put back yet."""
    rows = session.scalars(select(ScalingWorker).where(ScalingWorker.state == "dead")).all()
    return [w for w in rows if w.held]


def held_messages(worker: ScalingWorker) -> list[HeldMessage]:
    return [HeldMessage.from_json(m) for m in worker.held or []]


def purge_stopped(session: Session, before: datetime) -> int:
    """Forget stopped or dead workers (with nothing held) older than ``before``."""
    rows = session.scalars(
        select(ScalingWorker).where(
            ScalingWorker.state.in_(("stopped", "dead")), ScalingWorker.heartbeat_at < before
        )
    ).all()
    count = 0
    for worker in rows:
        if not worker.held:
            session.delete(worker)
            count += 1
    return count


def preregister(
    session: Session,
    worker_id: str,
    *,
    queues: Sequence[str],
    concurrency: int,
    backend: str,
    backend_ref: str | None,
    now: datetime,
) -> ScalingWorker:
    """A worker a backend just started: counted as ``starting`` (so the next pass does not start
    another) until it registers itself, or is reaped if it never does."""
    worker = ScalingWorker(
        id=worker_id,
        hostname="",
        pid=0,
        queues=list(queues),
        concurrency=concurrency,
        backend=backend,
        backend_ref=backend_ref,
        state="starting",
        active=0,
        held=[],
        tasks_done=0,
        busy_seconds=0.0,
        started_at=now,
        heartbeat_at=now,
    )
    return session.merge(worker)


def link(session: Session, worker_id: str, backend_ref: str | None) -> None:
    """Attach the backend's handle (pid, container id) to a worker recorded before its start;
    a worker that registered itself meanwhile keeps everything else it wrote."""
    worker = session.get(ScalingWorker, worker_id)
    if worker is not None and backend_ref and not worker.backend_ref:
        worker.backend_ref = backend_ref


def mark_draining(session: Session, worker_ids: Sequence[str]) -> None:
    """Workers asked to stop: no longer capacity, and never asked twice."""
    for worker_id in worker_ids:
        worker = session.get(ScalingWorker, worker_id)
        if worker is not None and worker.state in LIVE_STATES:
            worker.state = "draining"
