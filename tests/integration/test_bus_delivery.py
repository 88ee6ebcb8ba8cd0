"""Durable delivery against real PostgreSQL, Redis and Celery workers: a worker killed during a
delivery, or a broker that loses the enqueue, loses nothing — the outbox sweeper finds it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.bus import service
from app.bus.arns import Scope
from app.bus.events import put_events
from app.bus.models import DeadLetter, Delivery, DeliveryAttempt
from app.bus.outbox import enqueue_deliveries, sweep
from app.config import Settings
from app.db import get_database
from tests.integration.cli import cli_env, smokehouse_argv
from tests.integration.recording_handlers import finished, started
from tests.services import free_port, postgres_database, require_redis, unavailable, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HANDLERS = "tests.integration.recording_handlers"


@pytest.fixture
def record_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "records"
    path.mkdir()
    monkeypatch.setenv("SMOKEHOUSE_TEST_RECORD_DIR", str(path))
    return path


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[bool], str]]:
    """A redis-server of our own that the test may stop and start again on the same port."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server")
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def control(up: bool) -> str:
        if up:
            processes.append(
                subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                    stdout=subprocess.DEVNULL,
                    cwd=tmp_path,
                )
            )
            from tests.services import tcp_open

            wait_for(lambda: tcp_open(f"redis://127.0.0.1:{port}", port), 10, what="redis")
        else:
            for process in processes:
                process.kill()
                process.wait()
            processes.clear()
        return f"redis://127.0.0.1:{port}/0"

    yield control
    control(False)


@pytest.fixture
def stack(
    settings_factory: Callable[..., Settings], own_redis: Callable[[bool], str], record_dir: Path
) -> Iterator[Settings]:
    require_redis()
    broker = own_redis(True)
    with postgres_database(migrated=True) as database_url:
        settings = settings_factory(
            database_url=database_url,
            broker_url=broker,
            handler_modules=HANDLERS,
            bus_sweep_grace_seconds=1,
            bus_claim_seconds=4,
        )
        with get_database(settings.sqlalchemy_url).session() as session:
            service.put_rule(session, name="record", event_pattern={"source": ["test.orders"]})
            failed = service.put_targets(
                session,
                None,
                "record",
                [{"Id": "rec", "Arn": "arn:smokehouse:handler:test-record"}],
            )
            assert failed == []
        yield settings


class Worker:
    def __init__(self, settings: Settings, log: Path) -> None:
        env = cli_env(
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            broker_url=settings.broker_url,
            handler_modules=HANDLERS,
            bus_claim_seconds=settings.bus_claim_seconds,
            log_format="console",
        )
        env["SMOKEHOUSE_TEST_RECORD_DIR"] = os.environ["SMOKEHOUSE_TEST_RECORD_DIR"]
        self.process = subprocess.Popen(
            smokehouse_argv("worker", "--queues=bus", "--concurrency=1"),
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def put(settings: Settings, detail: dict[str, object]) -> list[str]:
    scope = Scope(settings.region, settings.account_id)
    entry = {"Source": "test.orders", "DetailType": "Order", "Detail": json.dumps(detail)}
    with get_database(settings.sqlalchemy_url).session() as session:
        result = put_events(session, [entry], scope)
    assert result.failed_count == 0
    return result.delivery_ids


def delivery(settings: Settings, delivery_id: str) -> Delivery:
    with get_database(settings.sqlalchemy_url).session() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        return found


def test_worker_killed_during_delivery_loses_nothing(
    stack: Settings, record_dir: Path, tmp_path: Path
) -> None:
    [delivery_id] = put(stack, {"order": 1, "sleep": 5})
    first = Worker(stack, tmp_path / "worker1.log")
    try:
        enqueue_deliveries(stack, [delivery_id])
        wait_for(lambda: started(record_dir), 30, what="the handler to start")
    finally:
        first.kill9()  # mid-delivery: the handler is sleeping
    assert finished(record_dir) == []

    second = Worker(stack, tmp_path / "worker2.log")
    try:
        # The claim expires (4 s), the sweeper re-enqueues, the new worker delivers.
        def delivered() -> bool:
            sweep(stack)
            return delivery(stack, delivery_id).status == "succeeded"

        wait_for(delivered, 60, interval=1, what="the delivery to succeed on the second worker")
    finally:
        second.stop()
    assert len(finished(record_dir)) == 1
    assert delivery(stack, delivery_id).attempts == 2


def test_broker_restart_between_commit_and_enqueue_loses_nothing(
    stack: Settings, own_redis: Callable[[bool], str], record_dir: Path, tmp_path: Path
) -> None:
    own_redis(False)  # the broker goes away right after the commit...
    ids = put(stack, {"order": 2})
    assert enqueue_deliveries(stack, ids) == 0  # ...so the enqueue is lost (logged, not raised)
    own_redis(True)  # back, empty (no persistence)
    worker = Worker(stack, tmp_path / "worker.log")
    try:

        def delivered() -> bool:
            sweep(stack)
            return all(delivery(stack, i).status == "succeeded" for i in ids)

        wait_for(delivered, 60, interval=1, what="the sweeper to recover the lost enqueue")
    finally:
        worker.stop()
    assert len(finished(record_dir)) == len(ids) == 1
    with get_database(stack.sqlalchemy_url).session() as session:
        attempts = session.scalars(select(DeliveryAttempt)).all()
        assert [a.outcome for a in attempts] == ["succeeded"]
        assert session.scalars(select(DeadLetter)).all() == []
