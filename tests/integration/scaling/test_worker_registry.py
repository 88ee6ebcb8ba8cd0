"""Real workers: they register, heartbeat busy/idle, drain on SIGTERM; one killed with -9 is
reaped and the message it held runs again on another worker at once (no visibility timeout)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings
from app.db import get_database, utcnow
from app.migrate import upgrade
from app.scaling.autoscaler import Autoscaler
from app.scaling.backends import NoBackend
from app.scaling.models import ScalingWorker
from app.scaling.settings import load_scaling_settings
from tests.integration.scaling.workers import kill_hard, start_worker, stop
from tests.services import migrate, require_redis, wait_for
from workers.celery_app import create_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(params=["sqlite", "redis"])
def stack(request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]) -> Settings:
    if request.param == "sqlite":
        settings = settings_factory()
    else:
        settings = settings_factory(broker_url=require_redis())
    migrate(settings.sqlalchemy_url)
    return settings


def row(settings: Settings, worker_id: str) -> ScalingWorker | None:
    with get_database(settings.sqlalchemy_url).session() as session:
        return session.get(ScalingWorker, worker_id)


def state_of(settings: Settings, worker_id: str) -> str | None:
    found = row(settings, worker_id)
    return found.state if found else None


def marks(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_dead_workers_message_runs_again_at_once(stack: Settings, tmp_path: Path) -> None:
    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "marks.txt"
    celery = create_celery(stack)
    doomed = start_worker(stack, "doomed", queue, tmp_path)
    survivor = None
    try:
        wait_for(lambda: state_of(stack, "doomed") == "idle", 30, what="worker to register")
        task_id = uuid.uuid4().hex
        payload = {"seconds": 3, "path": str(marker)}
        celery.send_task(
            "scaling.handle", args=["scaling-test-mark", payload], queue=queue, task_id=task_id
        )

        def holds_it() -> bool:
            found = row(stack, "doomed")
            return found is not None and found.state == "busy" and len(found.held) == 1

        wait_for(holds_it, 20, what="the worker to report the task it runs")
        found = row(stack, "doomed")
        assert found is not None
        assert found.current_task == f"scaling.handle[{task_id}]"
        assert found.held[0]["queue"] == queue
        kill_hard(doomed)

        scaling = load_scaling_settings(queues=queue, liveness_seconds=1)
        autoscaler = Autoscaler(stack, scaling, NoBackend(), publish=False)
        restored = autoscaler.reap(utcnow() + timedelta(seconds=2))
        assert restored == 1
        assert state_of(stack, "doomed") == "dead"

        survivor = start_worker(stack, "survivor", queue, tmp_path)
        wait_for(lambda: marks(marker), 30, what="the restored task to run")
        assert marks(marker) == [["survivor", task_id]]
    finally:
        kill_hard(doomed)
        if survivor is not None:
            kill_hard(survivor)


def test_warm_shutdown_drains_then_stops(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    stack = settings_factory()  # the broker does not matter here
    upgrade(stack.sqlalchemy_url)
    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "marks.txt"
    worker = start_worker(stack, "drainer", queue, tmp_path)
    try:
        wait_for(lambda: state_of(stack, "drainer") == "idle", 30, what="worker to register")
        payload = {"seconds": 4, "path": str(marker)}  # long enough to see it draining
        create_celery(stack).send_task(
            "scaling.handle", args=["scaling-test-mark", payload], queue=queue
        )
        wait_for(lambda: state_of(stack, "drainer") == "busy", 20, what="busy")
        worker.terminate()
        wait_for(lambda: state_of(stack, "drainer") == "draining", 10, what="draining")
        wait_for(lambda: state_of(stack, "drainer") == "stopped", 20, what="stopped")
        assert len(marks(marker)) == 1  # the running task finished before the worker left
        found = row(stack, "drainer")
        assert found is not None
        assert found.tasks_done == 1
        assert found.busy_seconds >= 4
    finally:
        stop(worker)
