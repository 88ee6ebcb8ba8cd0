"""One autoscaler pass at a time, with a fake depth probe and a recording backend: decisions are
recorded and published on the bus, the backend is told, started workers count at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.bus.models import Event
from app.config import Settings
from app.db import get_database
from app.scaling import registry
from app.scaling.autoscaler import EVENT_SOURCE, Autoscaler, dump_state, load_state
from app.scaling.backends.base import Recorder, ScaleResult, Started, WorkerView, no_record, plan
from app.scaling.depth import QueueDepth
from app.scaling.models import ScalingDecision, ScalingWorker
from app.scaling.policy import PolicyState
from app.scaling.settings import load_scaling_settings
from tests.services import migrate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


@dataclass
class RecordingBackend:
    name: str = "fake"
    calls: list[tuple[str, int, list[WorkerView]]] = field(default_factory=list)
    fail: bool = False
    counter: int = 0

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        self.calls.append((queue, desired, list(workers)))
        if self.fail:
            raise RuntimeError("backend down")
        todo = plan(desired, workers, self.name)
        started = []
        for _ in range(todo.start):
            self.counter += 1
            record(f"fake-{self.counter}")
            started.append(Started(f"fake-{self.counter}", str(self.counter)))
        return ScaleResult(started=started, stopped=[w.id for w in todo.stop])

    def close(self) -> None:
        return None


@dataclass
class FakeDepth:
    ready: int = 0
    unacked: int = 0

    def __call__(self, url: str, queues: Sequence[str]) -> dict[str, QueueDepth]:
        return {q: QueueDepth(q, self.ready, self.unacked) for q in queues}


@pytest.fixture
def stack(settings_factory: Callable[..., Settings]) -> Settings:
    settings = settings_factory(worker_concurrency=2)
    migrate(settings.sqlalchemy_url)
    return settings


def make(
    stack: Settings, depth: FakeDepth, backend: RecordingBackend, **scaling: object
) -> Autoscaler:
    options: dict[str, object] = {
        "queues": "work",
        "max_workers": 4,
        "stabilization_seconds": 60,
        "idle_cooldown_seconds": 30,
        "liveness_seconds": 300,
    }
    options.update(scaling)
    return Autoscaler(stack, load_scaling_settings(**options), backend, depth_probe=depth)


def decisions(settings: Settings) -> list[ScalingDecision]:
    with get_database(settings.sqlalchemy_url).session() as session:
        return list(session.scalars(select(ScalingDecision).order_by(ScalingDecision.decided_at)))


def workers(settings: Settings) -> dict[str, str]:
    with get_database(settings.sqlalchemy_url).session() as session:
        return {w.id: w.state for w in session.scalars(select(ScalingWorker))}


def beat(settings: Settings, worker_id: str, state: str, now: datetime, active: int = 0) -> None:
    info = registry.WorkerInfo(worker_id, ["work"], 2, "h", 1, "fake")
    with get_database(settings.sqlalchemy_url).session() as session:
        registry.heartbeat(session, info, registry.Heartbeat(state, active=active), now)


def test_scale_up_is_recorded_published_and_started(stack: Settings) -> None:
    depth, backend = FakeDepth(ready=5), RecordingBackend()
    autoscaler = make(stack, depth, backend)
    [outcome] = autoscaler.run_once(T0)
    assert outcome.decision.desired == 3  # 5 messages, 2 per worker
    [decision] = decisions(stack)
    assert (decision.previous, decision.desired, decision.queued) == (0, 3, 5)
    assert workers(stack) == {"fake-1": "starting", "fake-2": "starting", "fake-3": "starting"}
    with get_database(stack.sqlalchemy_url).session() as session:
        [event] = session.scalars(select(Event).where(Event.source == EVENT_SOURCE))
        assert event.envelope["detail"]["desired"] == 3
        assert event.envelope["detail-type"] == "Worker Pool Scaled"

    # The next pass sees the starting workers: nothing new started, nothing recorded.
    [again] = autoscaler.run_once(T0 + timedelta(seconds=5))
    assert again.result is not None
    assert again.result.started == []
    assert len(decisions(stack)) == 1


def test_scale_down_waits_then_stops_only_idle_workers(stack: Settings) -> None:
    depth, backend = FakeDepth(ready=8), RecordingBackend()
    autoscaler = make(stack, depth, backend)
    autoscaler.run_once(T0)
    assert len(workers(stack)) == 4
    for n in (1, 2, 3):
        beat(stack, f"fake-{n}", "idle", T0 + timedelta(seconds=10))
    beat(stack, "fake-4", "busy", T0 + timedelta(seconds=10), active=1)

    depth.ready = 0
    depth.unacked = 1
    [held] = autoscaler.run_once(T0 + timedelta(seconds=20))
    assert held.decision.desired == 4  # stabilizing: 4 is still in the window
    assert held.result is not None
    assert held.result.stopped == []

    depth.unacked = 0
    for n in (1, 2, 3):
        beat(stack, f"fake-{n}", "idle", T0 + timedelta(seconds=100))
    beat(stack, "fake-4", "busy", T0 + timedelta(seconds=100), active=1)
    [down] = autoscaler.run_once(T0 + timedelta(seconds=100))
    assert down.decision.desired == 1  # idle past cooldown, but one worker is busy
    assert down.result is not None
    assert sorted(down.result.stopped) == ["fake-1", "fake-2", "fake-3"]
    assert workers(stack)["fake-4"] == "busy"
    assert {workers(stack)[f"fake-{n}"] for n in (1, 2, 3)} == {"draining"}
    assert [d.desired for d in decisions(stack)] == [4, 1]


def test_backend_failure_is_recorded_and_retried(stack: Settings) -> None:
    depth, backend = FakeDepth(ready=1), RecordingBackend(fail=True)
    autoscaler = make(stack, depth, backend)
    [outcome] = autoscaler.run_once(T0)
    assert outcome.error == "RuntimeError: backend down"
    assert decisions(stack)[0].error == "RuntimeError: backend down"
    backend.fail = False
    [retry] = autoscaler.run_once(T0 + timedelta(seconds=5))
    assert retry.result is not None
    assert len(retry.result.started) == 1


def test_starting_worker_that_never_registers_is_reaped_and_replaced(stack: Settings) -> None:
    depth, backend = FakeDepth(ready=1), RecordingBackend()
    autoscaler = make(stack, depth, backend, liveness_seconds=30)
    autoscaler.run_once(T0)
    assert workers(stack) == {"fake-1": "starting"}
    autoscaler.run_once(T0 + timedelta(seconds=31))
    assert workers(stack) == {"fake-1": "dead", "fake-2": "starting"}


def test_policy_state_round_trips() -> None:
    history = ((T0, 3), (T0 + timedelta(seconds=1), 2))
    state = PolicyState(recommendations=history, last_active_at=T0)
    assert load_state(dump_state(state)) == state
    assert load_state(None) == PolicyState()


def test_serve_wakes_at_once_when_a_queue_gets_work(stack: Settings) -> None:
    """Interval far away: the pass still runs within a wake check of the first message."""
    import threading
    import time

    depth, backend = FakeDepth(), RecordingBackend()
    autoscaler = make(stack, depth, backend, interval_seconds=3600)
    stop = threading.Event()
    loop = threading.Thread(target=autoscaler.serve, args=(stop, 0.05), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while not backend.calls and time.monotonic() < deadline:  # the first pass, at start
            time.sleep(0.02)
        assert len(backend.calls) == 1
        time.sleep(0.3)
        assert len(backend.calls) == 1  # idle: no pass until the interval
        depth.ready = 3
        deadline = time.monotonic() + 5
        while len(backend.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(backend.calls) == 2
        assert backend.calls[-1][1] == 2  # 3 messages, 2 per worker
    finally:
        stop.set()
        loop.join(5)


@dataclass
class CrashingBackend(RecordingBackend):
    """Records its worker, then dies before the worker exists (the autoscaler's host lost)."""

    seen_before_start: list[dict[str, str]] = field(default_factory=list)
    settings: Settings | None = None

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        if self.seen_before_start:  # crashed once already: a normal pass now
            return super().scale(queue, desired, workers, record)
        self.counter += 1
        record(f"fake-{self.counter}")
        assert self.settings is not None
        self.seen_before_start.append(globals()["workers"](self.settings))
        raise RuntimeError("killed between record and start")


def test_a_worker_is_recorded_before_it_is_started(stack: Settings) -> None:
    backend = CrashingBackend(settings=stack)
    autoscaler = make(stack, FakeDepth(ready=1), backend, liveness_seconds=30)
    [outcome] = autoscaler.run_once(T0)
    assert backend.seen_before_start == [{"fake-1": "starting"}]  # committed before the start
    assert outcome.error is not None
    # The next pass counts the recorded worker: no second start for the same shortfall.
    [again] = autoscaler.run_once(T0 + timedelta(seconds=5))
    assert [len(w) for _, _, w in backend.calls] == [1]  # it saw the recorded worker
    assert again.result is not None
    assert again.result.started == []


def test_a_queue_whose_lease_another_autoscaler_holds_is_not_passed(stack: Settings) -> None:
    from app.leases import acquire

    backend = RecordingBackend()
    other = acquire(get_database(stack.sqlalchemy_url), "autoscaler:work", "other", 60)
    assert other is not None
    assert make(stack, FakeDepth(ready=5), backend).run_once(T0) == []
    assert backend.calls == []
    assert workers(stack) == {}


def test_an_autoscaler_that_lost_its_lease_mid_pass_starts_nothing(stack: Settings) -> None:
    from sqlalchemy import update

    from app.leases import LeaseRow, acquire

    database = get_database(stack.sqlalchemy_url)

    @dataclass
    class StallingBackend(RecordingBackend):
        def scale(
            self,
            queue: str,
            desired: int,
            workers: Sequence[WorkerView],
            record: Recorder = no_record,
        ) -> ScaleResult:
            # A long pause: the lease lapses and another autoscaler takes the queue.
            with database.session() as session:
                session.execute(
                    update(LeaseRow)
                    .where(LeaseRow.name == "autoscaler:work")
                    .values(expires_at=datetime(2000, 1, 1, tzinfo=UTC))
                )
            assert acquire(database, "autoscaler:work", "other", 60) is not None
            return super().scale(queue, desired, workers, record)

    backend = StallingBackend()
    [outcome] = make(stack, FakeDepth(ready=5), backend).run_once(T0)
    assert outcome.error is not None
    assert "LeaseLost" in outcome.error
    assert workers(stack) == {}  # nothing recorded, so nothing started
