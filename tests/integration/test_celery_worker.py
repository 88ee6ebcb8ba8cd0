"""A real ``smokehouse worker`` (prefork, acks late) executes tasks on every supported broker."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import get_database, utcnow
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
    broker = require_redis() if request.param == "redis" else require_rabbitmq()
    with postgres_database(migrated=True) as database_url:
        settings = settings_factory(database_url=database_url, broker_url=broker)
        create_celery(settings).control.purge()
        yield settings


@pytest.fixture
def worker(stack: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = cli_env(
        data_dir=stack.data_dir,
        database_url=stack.database_url or "",
        broker_url=stack.broker_url or "",
        log_format="console",
    )
    env = {k: v for k, v in env.items() if v != ""}
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        smokehouse_argv("worker", "--concurrency=2"), env=env, stdout=log, stderr=log, cwd=tmp_path
    )
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("worker did not stop within 30 s of SIGTERM") from None


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
    assert ping.worker.startswith("celery@")
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
