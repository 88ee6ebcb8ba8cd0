"""Shared thermometer fixtures: a private Mosquitto, telemetry builders, an MQTT test publisher,
an in-process ingest, and a whole stack (database, Celery broker, worker, ingest) per mode.

Stable for the other thermometer tests to import:

* ``mqtt_url`` fixture — a private Mosquitto with the project's config on a free port.
* ``telemetry(device_id, seq, probes=..., ts=...)`` → the contract's dict; ``encode(...)`` → bytes.
* ``add_device(database_url, device_id, **fields)`` — a provisioned device row.
* ``TestPublisher(mqtt_url)`` — publish QoS 1 and wait for every PUBACK.
* ``running_ingest(settings, iot=None)`` — an in-process :class:`Ingestor`, connected.
* ``iot_stack(mode, tmp_path)`` — database + broker + Mosquitto + definitions applied + one worker
  (``--queues=workflows,bus``) + ``smokehouse ingest`` subprocess; ``IotStack.session()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from app.config import Settings, load_settings
from app.db import get_database, utcnow
from app.iot.ingest.subscriber import Ingestor
from app.iot.models import Device
from app.iot.settings import IotSettings, load_iot_settings
from app.mqtt import MqttEndpoint
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import cli_env, smokehouse_argv
from tests.integration.workflows.stack import own_redis
from tests.services import ROOT, migrate, mosquitto, postgres_database, wait_for

DEFAULT_PROBES: tuple[dict[str, Any], ...] = (
    {"id": "pit", "temp_c": 110.0, "status": "ok"},
    {"id": "meat1", "temp_c": 40.0, "status": "ok"},
)


@pytest.fixture
def mqtt_url(tmp_path: Path) -> Iterator[str]:
    with mosquitto(tmp_path) as url:
        yield url


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def telemetry(
    device_id: str,
    seq: int,
    probes: Sequence[dict[str, Any]] = DEFAULT_PROBES,
    ts: datetime | str | None = None,
) -> dict[str, Any]:
    stamp = ts if isinstance(ts, str) else rfc3339(ts or utcnow())
    return {"device_id": device_id, "seq": seq, "ts": stamp, "probes": [dict(p) for p in probes]}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def telemetry_topic(device_id: str) -> str:
    return f"smokehouse/{device_id}/telemetry"


def add_device(database_url: str, device_id: str, **fields: Any) -> None:
    values: dict[str, Any] = {
        "id": device_id,
        "name": device_id,
        "mqtt_username": device_id,
        "notify_urls": [],
        "home_assistant_discovery": False,
        "created_at": utcnow(),
        **fields,
    }
    with get_database(database_url).session() as session:
        session.add(Device(**values))


class TestPublisher:
    """A paho MQTT 5 client for tests: ``publish`` returns once the broker acked (QoS 1)."""

    __test__ = False

    def __init__(self, url: str, client_id: str = "") -> None:
        endpoint = MqttEndpoint.from_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def publish_many(self, items: Sequence[tuple[str, bytes]], qos: int = 1) -> None:
        infos = [self.client.publish(topic, payload, qos=qos) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def publisher(url: str) -> Iterator[TestPublisher]:
    client = TestPublisher(url)
    try:
        yield client
    finally:
        client.close()


def iot_overrides(**values: Any) -> IotSettings:
    defaults: dict[str, Any] = {"batch_max_wait_seconds": 0.02}
    defaults.update(values)
    return load_iot_settings(**defaults)


@contextmanager
def running_ingest(
    settings: Settings, iot: IotSettings | None = None, client_id: str = "test-ingest"
) -> Iterator[Ingestor]:
    ingestor = Ingestor(settings, iot or iot_overrides(), client_id=client_id)
    ingestor.start()
    try:
        assert ingestor.wait_connected(10), "ingest did not connect to the broker"
        yield ingestor
    finally:
        ingestor.stop()


@dataclass
class IotStack:
    mode: str
    settings: Settings
    env: dict[str, str]
    mqtt_url: str
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with get_database(self.settings.sqlalchemy_url).session() as session:
            yield session

    def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        process = subprocess.Popen(
            smokehouse_argv(*args),
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_worker(self) -> subprocess.Popen[bytes]:
        return self.spawn(
            "worker", "worker", "--queues=workflows,bus,default,iot", "--concurrency=2"
        )

    def start_ingest(
        self, client_id: str = "stack-ingest", wait: float = 20
    ) -> subprocess.Popen[bytes]:
        """Start ``smokehouse ingest`` and wait until it has subscribed (the broker's SUBACK)."""
        log = self.tmp / "ingest.log"
        before = log.read_text(errors="replace").count("ingest subscribed") if log.exists() else 0
        process = self.spawn(
            "ingest", "ingest", f"--client-id={client_id}", env={"SMOKEHOUSE_LOG_LEVEL": "INFO"}
        )

        def connected() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"ingest exited with {process.returncode}\n{self.logs()}")
            return log.read_text(errors="replace").count("ingest subscribed") > before

        wait_for(connected, wait, interval=0.05, what="ingest to subscribe")
        return process

    def simulate(
        self, device_id: str, count: int, *extra: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the device package's simulator against this stack's Mosquitto."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "smokehouse_device",
                "simulate",
                f"--broker={self.mqtt_url}",
                f"--device-id={device_id}",
                f"--count={count}",
                f"--buffer={self.tmp / f'buffer-{device_id}.sqlite3'}",
                "--interval=5",
                "--time-scale=1000",
                *extra,
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT / "device" / "src")},
            capture_output=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )

    @staticmethod
    def kill9(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill9(process)


@contextmanager
def iot_stack(mode: str, tmp_path: Path, **settings: Any) -> Iterator[IotStack]:
    """``embedded`` (SQLite + SQLite broker) or ``production`` (PostgreSQL + Redis); both with a
    private Mosquitto. Definitions (rules, state machines) are applied; one worker runs."""
    from app.bus.definitions import apply_all as apply_rules
    from app.workflows.definitions import apply_all as apply_machines

    with ExitStack() as stack:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "log_format": "console",
            "log_level": "WARNING",
            "bus_sweep_grace_seconds": 2,
            **settings,
        }
        if mode == "production":
            values["database_url"] = stack.enter_context(postgres_database(migrated=True))
            values["broker_url"] = stack.enter_context(own_redis(tmp_path))
            values["redis_url"] = values["broker_url"]
            values["secret_key"] = TEST_SECRET_KEY  # production: the API will not start without
        values["mqtt_url"] = stack.enter_context(mosquitto(tmp_path))
        built_settings = load_settings(**values)
        migrate(built_settings.sqlalchemy_url)
        apply_machines(built_settings)
        apply_rules(built_settings)
        env = cli_env(**values)
        env.setdefault("SMOKEHOUSE_IOT_BATCH_MAX_WAIT_SECONDS", "0.02")
        built = IotStack(mode, built_settings, env, values["mqtt_url"], tmp_path)
        try:
            yield built
        finally:
            built.stop()


@contextmanager
def collect_live(settings: Settings, channel: str) -> Iterator[list[dict[str, Any]]]:
    """Messages published on a live channel (``app.realtime.subscribe``) while inside."""
    import asyncio

    from app import realtime

    received: list[dict[str, Any]] = []
    ready = threading.Event()
    stop = threading.Event()

    async def listen() -> None:
        iterator = realtime.subscribe(settings, channel).__aiter__()
        pending = asyncio.ensure_future(iterator.__anext__())
        hubs = realtime._hubs.setdefault(asyncio.get_running_loop(), {})
        for _ in range(1000):  # until the broker confirmed the subscription (SUBACK / subscribe)
            if any(channel in hub.ready for hub in hubs.values()):
                break
            await asyncio.sleep(0.01)
        ready.set()
        while not stop.is_set():
            done, _ = await asyncio.wait({pending}, timeout=0.1)
            if done:
                try:
                    received.append(pending.result())
                except StopAsyncIteration:
                    return
                pending = asyncio.ensure_future(iterator.__anext__())
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]

    thread = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield received
    finally:
        stop.set()
        thread.join(10)


def wait_rows(stack: IotStack, count_sql: Any, expected: int, timeout: float = 30) -> None:
    """Wait until ``count_sql`` (a select of a count) returns ``expected``; show logs if not."""
    found: list[int] = []

    def done() -> bool:
        with stack.session() as session:
            found[:] = [int(session.scalar(count_sql) or 0)]
        return found[0] >= expected

    try:
        wait_for(done, timeout, interval=0.2, what=f"{expected} rows")
    except AssertionError:
        raise AssertionError(f"found {found} of {expected} rows\n{stack.logs()}") from None


__all__ = [
    "DEFAULT_PROBES",
    "IotStack",
    "TestPublisher",
    "add_device",
    "collect_live",
    "encode",
    "iot_overrides",
    "iot_stack",
    "publisher",
    "rfc3339",
    "running_ingest",
    "telemetry",
    "telemetry_topic",
    "wait_rows",
]
