"""Brokers for the scaling tests: real Redis/RabbitMQ (unique queue names) and the SQLite one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import app.broker.sqlite  # noqa: F401  (registers smokehouse+sqlite://)
from tests.services import require_rabbitmq, require_redis


@pytest.fixture
def queue_name() -> str:
    return f"scaling-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_broker(tmp_path: Path) -> str:
    return f"smokehouse+sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def redis_broker(queue_name: str) -> Iterator[str]:
    import redis

    url = require_redis()
    yield url
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{queue_name}*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def leasing_broker(request: pytest.FixtureRequest, queue_name: str, tmp_path: Path) -> str:
    """Brokers where a dead consumer's messages need us to put them back."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_broker"))
    return str(request.getfixturevalue("redis_broker"))


@pytest.fixture
def rabbitmq_broker() -> str:
    return require_rabbitmq()
