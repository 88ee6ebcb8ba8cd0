"""A real ``smokehouse worker`` (prefork, acks late) executes tasks on every supported broker."""

from __future__ import annotations

import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from app.broker.celery import on_host
from app.config import Settings
from app.db import get_database, utcnow
from app.scaling.models import ScalingWorker
from app.system.models import Ping
from tests.integration.cli import cli_env, smokehouse_argv
from tests.services import migrate, postgres_database, require_rabbitmq, require_redis, wait_for
from workers.celery_app import create_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(params=["embedded", "redis", "rabbitmq"])
def stack(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[Settings]:
    """Embedded: SQLite + the SQLite broker. Production: PostgreSQL + Redis or RabbitMQ."""
    if request.param == "embedded":
        settings = settings_factory()
        migrate(settings.sqlalchemy_url)
        yield settings
        return
    with production_stack(request.param, settings_factory) as settings:
        yield settings


@pytest.fixture(params=["redis", "rabbitmq"])
def networked(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> Iterator[Settings]:
    """Production brokers only: the embedded SQLite broker has no remote control (no node
    names to clash), and ``smokehouse run`` gives its first local worker a head start."""
    with production_stack(request.param, settings_factory) as settings:
        yield settings


@contextmanager
def production_stack(broker: str, settings_factory: Callable[..., Settings]) -> Iterator[Settings]:
    broker_url = require_redis() if broker == "redis" else require_rabbitmq()
    with postgres_database(migrated=True) as database_url:
        settings = settings_factory(database_url=database_url, broker_url=broker_url)
        create_celery(settings).control.purge()
        yield settings


def start_worker(stack: Settings, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = cli_env(
        data_dir=stack.data_dir,
        database_url=stack.database_url or "",
        broker_url=stack.broker_url or "",
        log_format="console",
    )
    env = {k: v for k, v in env.items() if v != ""}
    log = log_path.open("wb")
    return subprocess.Popen(
        smokehouse_argv("worker", *args), env=env, stdout=log, stderr=log, cwd=log_path.parent
    )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("worker did not stop within 30 s of SIGTERM") from None


@pytest.fixture
def worker(stack: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(stack, tmp_path / "worker.log", "--concurrency=2")
    yield process
    stop_worker(process)


def pings(settings: Settings, ping_id: str) -> list[Ping]:
    with get_database(settings.sqlalchemy_url).session() as session:
        return list(session.scalars(select(Ping).where(Ping.id == ping_id)))


def test_worker_runs_a_task_and_records_it(
    stack: Settings, worker: subprocess.Popen[bytes]
) -> None:
    celery = create_celery(stack)
    ping_id = uuid.uuid4().hex
    celery.send_task("system.ping", kwargs={"sent_at": utcnow().isoformat()}, task_id=ping_id)
    wait_for(lambda: pings(stack, ping_id), timeout=30, what="the worker to record the ping")
    [ping] = pings(stack, ping_id)
    assert on_host(ping.worker, socket.gethostname())  # recorded by a worker node of this host
    assert ping.received_at >= ping.sent_at


def test_redelivered_task_changes_nothing(stack: Settings, worker: subprocess.Popen[bytes]) -> None:
    """At-least-once delivery + idempotent task: the same task id twice leaves one row."""
    celery = create_celery(stack)
    ping_id = uuid.uuid4().hex
    for _ in range(2):
        celery.send_task("system.ping", task_id=ping_id)
    marker = uuid.uuid4().hex
    celery.send_task("system.ping", task_id=marker)
    wait_for(lambda: pings(stack, marker), timeout=30, what="all pings to be processed")
    assert len(pings(stack, ping_id)) == 1


def test_two_workers_on_one_host_both_consume(networked: Settings, tmp_path: Path) -> None:
    """Each worker process has its own node name: with Celery's default (``celery@<host>`` for
    all) RabbitMQ refused the second worker's remote-control queue and it never consumed, which
    is what the process backend runs into with several local workers."""
    workers = [
        start_worker(networked, tmp_path / f"worker{n}.log", "--concurrency=1") for n in (1, 2)
    ]
    try:

        def ready() -> int:  # registered at worker_ready, once each consumer is up
            with get_database(networked.sqlalchemy_url).session() as session:
                return len(session.scalars(select(ScalingWorker.id)).all())

        wait_for(lambda: ready() == 2, timeout=60, what="both workers to be ready")
        celery = create_celery(networked)
        ids = [uuid.uuid4().hex for _ in range(40)]
        for ping_id in ids:
            celery.send_task("system.ping", task_id=ping_id)

        def recorded() -> list[Ping]:
            with get_database(networked.sqlalchemy_url).session() as session:
                return list(session.scalars(select(Ping).where(Ping.id.in_(ids))))

        wait_for(lambda: len(recorded()) == len(ids), timeout=60, what="every ping")
        nodes = {ping.worker for ping in recorded()}
        assert len(nodes) == 2, nodes  # both workers took work
        assert all(on_host(node, socket.gethostname()) for node in nodes)
    finally:
        for process in workers:
            stop_worker(process)
