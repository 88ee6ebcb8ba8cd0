"""Readiness probes: can this process reach the database, the broker, MQTT and Redis?

Each probe runs in a thread with a deadline, all at once, so ``/readyz`` answers within about
two seconds even when a dependency hangs instead of refusing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from kombu.connection import Connection

from app.config import Settings
from app.db import get_database
from app.mqtt import MqttEndpoint, probe

TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    ok: bool
    detail: str
    latency_ms: float


def _database(settings: Settings) -> None:
    get_database(settings.sqlalchemy_url).ping()


def _broker(settings: Settings) -> None:
    import app.broker.sqlite  # noqa: F401  (the embedded scheme must be registered)

    with Connection(settings.celery_broker_url, connect_timeout=TIMEOUT) as connection:
        connection.ensure_connection(max_retries=1, timeout=TIMEOUT)
        connection.default_channel  # noqa: B018  (opens the transport for real)


def _mqtt(settings: Settings) -> None:
    probe(MqttEndpoint.from_url(settings.effective_mqtt_url), timeout=TIMEOUT)


def _redis(settings: Settings) -> None:
    assert settings.redis_url
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def probes_for(settings: Settings) -> dict[str, Callable[[Settings], None]]:
    checks: dict[str, Callable[[Settings], None]] = {
        "database": _database,
        "broker": _broker,
        "mqtt": _mqtt,
    }
    if settings.redis_url:
        checks["redis"] = _redis
    return checks


async def _run(name: str, check: Callable[[Settings], None], settings: Settings) -> ComponentStatus:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(check, settings), TIMEOUT + 0.5)
    except TimeoutError:
        detail, ok = f"no answer within {TIMEOUT:g}s", False
    except Exception as exc:  # any failure is a "not ready", never a 500
        detail, ok = f"{type(exc).__name__}: {exc}".strip()[:300], False
    else:
        detail, ok = "ok", True
    return ComponentStatus(name, ok, detail, round((time.perf_counter() - started) * 1000, 1))


async def check_all(settings: Settings) -> list[ComponentStatus]:
    checks = probes_for(settings)
    return list(await asyncio.gather(*(_run(n, c, settings) for n, c in checks.items())))
