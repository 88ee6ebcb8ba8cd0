"""The autoscaler loop: reap, probe, decide, record, publish, act — one ``run_once`` per pass.

A loop service in Prefect's style: ``run_once(now)`` does one complete pass and is what tests and
the periodic Celery task call; ``serve`` repeats it every ``interval_seconds`` and also at once when
a queue goes from empty to non-empty (a cheap depth probe every 0.25 s notices, whatever the
broker: no producer has to cooperate).

One pass:

1. **Reap.** Workers whose heartbeat is older than the liveness window are marked dead (commit),
   then the messages they held are put back on their queues (``recovery.restore``) and the rows
   forget them. A crash in between only means the next pass restores them.
2. **Probe** every autoscaled queue's depth.
3. **Decide** per queue with the pure policy, from depth, the registry's live workers and their
   measured service time, and the policy state persisted in ``scaling_queues``.
4. **Record and publish** a changed decision: a ``scaling_decisions`` row and a bus event
   (``source: smokehouse.scaling``) in the same transaction; deliveries are enqueued after commit.
5. **Act**: the backend moves the pool towards the desired count (every pass, so a crashed worker
   is replaced even when the decision did not change); each worker it starts is recorded as
   ``starting`` *before* it is started, and what it stopped is marked ``draining``.

**One pass per queue at a time, anywhere.** The beat task, ``smokehouse scaling run`` and any
number of copies of either may run: the reap holds the ``autoscaler:reap`` lease and a queue's
pass holds ``autoscaler:<queue>`` (``app.leases``), so a dead worker's messages are restored once
and two passes never start workers for the same shortfall. A pass that finds its queue's lease
held skips the queue; the recorder checks the lease's fencing token before each start, so a
holder that stalled past its lease starts nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, get_database, utcnow
from app.leases import Holding, fenced, held, holder_id
from app.scaling import registry
from app.scaling.backends.base import Backend, ScaleResult, WorkerView
from app.scaling.depth import QueueDepth, probe
from app.scaling.models import ScalingDecision, ScalingQueue, ScalingWorker
from app.scaling.policy import Decision, Observation, PolicyState, decide
from app.scaling.recovery import restore
from app.scaling.settings import ScalingSettings, policy_config
from app.scaling.sources import pool_depths

log = logging.getLogger("smokehouse.scaling")

EVENT_SOURCE = "smokehouse.scaling"
EVENT_DETAIL_TYPE = "Worker Pool Scaled"
Probe = Callable[[str, Sequence[str]], dict[str, QueueDepth]]


def dump_state(state: PolicyState) -> dict[str, Any]:
    return {
        "recommendations": [[t.isoformat(), n] for t, n in state.recommendations],
        "last_active_at": state.last_active_at.isoformat() if state.last_active_at else None,
    }


def load_state(data: dict[str, Any] | None) -> PolicyState:
    if not data:
        return PolicyState()
    last = data.get("last_active_at")
    return PolicyState(
        recommendations=tuple(
            (datetime.fromisoformat(t), int(n)) for t, n in data.get("recommendations", [])
        ),
        last_active_at=datetime.fromisoformat(last) if last else None,
    )


def view(worker: ScalingWorker) -> WorkerView:
    return WorkerView(
        id=worker.id,
        state=worker.state,
        active=worker.active,
        started_at=worker.started_at,
        backend=worker.backend,
        backend_ref=worker.backend_ref,
    )


def observe(
    queue: str, depth: QueueDepth, workers: Sequence[ScalingWorker], now: datetime
) -> Observation:
    """Policy inputs for one queue: broker depth plus what the registry's workers report."""
    capacity = [w for w in workers if w.state != "draining"]
    running = sum(w.active for w in workers)
    held = sum(1 for w in workers for m in (w.held or []) if m.get("queue") == queue)
    in_flight = max(depth.unacked or 0, held, running)
    done = sum(w.tasks_done for w in workers)
    busy_seconds = sum(w.busy_seconds for w in workers)
    return Observation(
        now=now,
        queued=depth.ready,
        reserved=in_flight - running,
        running=running,
        live_workers=len(capacity),
        busy_workers=sum(1 for w in capacity if w.state == "busy" or w.active > 0),
        service_time_seconds=busy_seconds / done if done else None,
    )


@dataclass
class QueuePass:
    """What one pass did for one queue (returned for tests, logs and the CLI)."""

    queue: str
    observation: Observation
    decision: Decision
    previous: int
    recorded: ScalingDecision | None
    result: ScaleResult | None
    error: str | None = None


class LeaseLost(RuntimeError):
    """The queue's lease passed to another autoscaler mid-pass: start nothing more."""


class Autoscaler:
    def __init__(
        self,
        settings: Settings,
        scaling: ScalingSettings,
        backend: Backend,
        *,
        database: Database | None = None,
        depth_probe: Probe | None = None,
        publish: bool = True,
    ) -> None:
        self.settings = settings
        self.scaling = scaling
        self.backend = backend
        self.database = database or get_database(settings.sqlalchemy_url)
        self.probe: Probe = depth_probe or (lambda url, queues: probe(url, queues))
        self.publish = publish
        self.policy = policy_config(scaling, settings.worker.concurrency)
        self.liveness = timedelta(seconds=scaling.liveness_seconds)
        self.holder = holder_id("autoscaler")
        self.lease_seconds = settings.scheduler.lease_seconds

    @classmethod
    def from_settings(
        cls, settings: Settings, scaling: ScalingSettings | None = None
    ) -> Autoscaler:
        from app.scaling.backends import create_backend

        scaling = scaling or settings.scaling
        return cls(settings, scaling, create_backend(settings, scaling))

    # -- 1. reap ---------------------------------------------------------------------------------

    def reap(self, now: datetime) -> int:
        """Mark silent workers dead, then put back what they held (under the ``autoscaler:reap``
        lease: one restorer at a time). Returns messages restored; 0 when another holds it."""
        with held(self.database, "autoscaler:reap", self.holder, self.lease_seconds) as holding:
            return 0 if holding is None else self._reap(now)

    def _reap(self, now: datetime) -> int:
        with self.database.session() as session:
            dead = registry.reap(session, now, self.liveness)
            for worker in dead:
                log.warning("worker %s missed its heartbeats: marked dead", worker.id)
        restored = 0
        with self.database.session() as session:
            pending = registry.unrestored(session)
            held = {w.id: registry.held_messages(w) for w in pending}
        for worker_id, messages in held.items():
            try:
                count = restore(self.settings.celery_broker_url, messages)
            except Exception as exc:  # broker down: try again next pass
                log.warning("could not restore messages of %s: %s", worker_id, exc)
                continue
            restored += count
            with self.database.session() as session:
                row = session.get(ScalingWorker, worker_id)
                if row is not None and row.state == "dead":
                    row.held = []
            if count:
                log.warning("restored %d messages held by dead worker %s", count, worker_id)
        return restored

    # -- 2-5. per queue ---------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> list[QueuePass]:
        """One pass over every queue; queues whose lease another autoscaler holds are skipped."""
        now = now or utcnow()
        self.reap(now)
        queues = self.scaling.queue_list
        depths = self.depths(queues)
        passes = []
        for queue in queues:
            lease = f"autoscaler:{queue}"
            with held(self.database, lease, self.holder, self.lease_seconds) as holding:
                if holding is None:
                    log.debug("queue %s: another autoscaler is passing it", queue)
                    continue
                passes.append(self.pass_queue(queue, depths[queue], now, holding))
        return passes

    def depths(self, queues: Sequence[str]) -> dict[str, QueueDepth]:
        """Each pool's depth: from its SQS queue when ``sqs_queues`` names one, else the broker."""
        return pool_depths(
            self.probe, self.settings.celery_broker_url, self.database, self.scaling, queues
        )

    def pass_queue(
        self, queue: str, depth: QueueDepth, now: datetime, holding: Holding | None = None
    ) -> QueuePass:
        with self.database.session() as session:
            if holding is not None and not fenced(session, holding.lease):
                raise LeaseLost(queue)
            workers = registry.live_workers(session, now, self.liveness, queue)
            views = [view(w) for w in workers]
            observed = observe(queue, depth, workers, now)
            row = session.get(ScalingQueue, queue)
            previous = row.desired if row is not None else observed.live_workers
            decision = decide(self.policy, observed, load_state(row.policy_state if row else None))
            if row is None:
                row = ScalingQueue(name=queue, desired=decision.desired, policy_state={})
                session.add(row)
            row.desired = decision.desired
            row.policy_state = dump_state(decision.state)
            row.updated_at = now
            recorded = None
            if decision.desired != previous:
                recorded = self.record(session, queue, observed, decision, previous, now)
                if self.publish:
                    self.publish_event(session, recorded)
        outcome = QueuePass(queue, observed, decision, previous, recorded, None)
        self.act(outcome, views, now, holding)
        return outcome

    def record(
        self,
        session: Session,
        queue: str,
        observed: Observation,
        decision: Decision,
        previous: int,
        now: datetime,
    ) -> ScalingDecision:
        row = ScalingDecision(
            id=str(uuid.uuid4()),
            queue=queue,
            decided_at=now,
            previous=previous,
            desired=decision.desired,
            recommendation=decision.recommendation,
            queued=observed.queued,
            reserved=observed.reserved,
            running=observed.running,
            live_workers=observed.live_workers,
            busy_workers=observed.busy_workers,
            reason=decision.reason[:255],
            backend=self.backend.name,
        )
        session.add(row)
        log.info("queue %s: %d -> %d workers (%s)", queue, previous, row.desired, row.reason)
        return row

    def publish_event(self, session: Session, row: ScalingDecision) -> None:
        """Put the decision on the bus; its deliveries are enqueued after the pass commits."""
        from app.bus.arns import Scope
        from app.bus.events import put_events

        detail = {
            "queue": row.queue,
            "decisionId": row.id,
            "previous": row.previous,
            "desired": row.desired,
            "recommendation": row.recommendation,
            "reason": row.reason,
            "queued": row.queued,
            "reserved": row.reserved,
            "running": row.running,
            "liveWorkers": row.live_workers,
            "busyWorkers": row.busy_workers,
            "backend": row.backend,
        }
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps(detail),
            "Resources": [f"arn:smokehouse:celery:{row.queue}"],
        }
        scope = Scope(self.settings.region, self.settings.account_id)
        result = put_events(session, [entry], scope, now=row.decided_at, settings=self.settings)
        if result.failed_count:
            log.warning("scaling event not accepted: %s", result.entries)

    def recorder(self, queue: str, now: datetime, holding: Holding | None) -> Callable[[str], None]:
        """What the backend calls before it starts a worker: commit its ``starting`` row, if
        this autoscaler still holds the queue's lease (else raise: start nothing)."""

        def record(worker_id: str) -> None:
            with self.database.session() as session:
                if holding is not None and not fenced(session, holding.lease):
                    raise LeaseLost(queue)
                registry.preregister(
                    session,
                    worker_id,
                    queues=[queue],
                    concurrency=self.settings.worker.concurrency,
                    backend=self.backend.name,
                    backend_ref=None,
                    now=now,
                )

        return record

    def act(
        self,
        outcome: QueuePass,
        views: list[WorkerView],
        now: datetime,
        holding: Holding | None = None,
    ) -> None:
        record = self.recorder(outcome.queue, now, holding)
        try:
            result = self.backend.scale(outcome.queue, outcome.decision.desired, views, record)
        except Exception as exc:  # the decision stands; the next pass tries again
            outcome.error = f"{type(exc).__name__}: {exc}"[:1024]
            log.warning("backend %s failed for %s: %s", self.backend.name, outcome.queue, exc)
            if outcome.recorded is not None:
                with self.database.session() as session:
                    row = session.get(ScalingDecision, outcome.recorded.id)
                    if row is not None:
                        row.error = outcome.error
            return
        outcome.result = result
        if not (result.started or result.stopped):
            return
        with self.database.session() as session:
            for started in result.started:
                registry.link(session, started.id, started.backend_ref)
            registry.mark_draining(session, result.stopped)

    # -- the loop ---------------------------------------------------------------------------------

    def serve(self, stop: threading.Event, wake_check_seconds: float = 0.25) -> None:
        """Run passes until ``stop`` is set: every interval, and at once on empty → non-empty."""
        queues = self.scaling.queue_list
        was_empty = dict.fromkeys(queues, True)
        next_pass = time.monotonic()
        while not stop.is_set():
            woken = False
            try:
                depths = self.depths(queues)
                for queue, depth in depths.items():
                    empty = depth.total == 0
                    woken = woken or (was_empty.get(queue, True) and not empty)
                    was_empty[queue] = empty
            except Exception as exc:
                log.warning("depth probe failed: %s", exc)
            if woken or time.monotonic() >= next_pass:
                try:
                    self.run_once()
                except Exception:
                    log.exception("autoscaler pass failed")
                next_pass = time.monotonic() + self.scaling.interval_seconds
            stop.wait(wake_check_seconds)
        self.backend.close()
