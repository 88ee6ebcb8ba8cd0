"""Which workers a backend starts and stops: only idle ones go, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.scaling.backends.base import WorkerView, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def worker(n: int, state: str = "idle", active: int = 0, backend: str = "process") -> WorkerView:
    return WorkerView(f"w{n}", state, active, T0 + timedelta(seconds=n), backend)


def test_start_the_difference() -> None:
    assert plan(3, [worker(1)], "process").start == 2


def test_stop_newest_idle_first() -> None:
    todo = plan(1, [worker(1), worker(2), worker(3)], "process")
    assert [w.id for w in todo.stop] == ["w3", "w2"]


def test_busy_workers_are_never_stopped() -> None:
    workers = [worker(1, "busy", 1), worker(2, "busy", 2), worker(3)]
    assert [w.id for w in plan(0, workers, "process").stop] == ["w3"]


def test_idle_state_with_active_tasks_is_busy() -> None:
    assert plan(0, [worker(1, "idle", 1)], "process").stop == ()


def test_draining_workers_count_for_nothing() -> None:
    todo = plan(2, [worker(1, "draining"), worker(2)], "process")
    assert (todo.start, todo.stop) == (1, ())


def test_starting_workers_are_not_stopped_and_count() -> None:
    todo = plan(1, [worker(1, "starting"), worker(2, "starting")], "process")
    assert (todo.start, todo.stop) == (0, ())


def test_other_backends_workers_are_left_alone() -> None:
    assert plan(0, [worker(1, backend="docker")], "process").stop == ()
