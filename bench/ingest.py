"""Thermometer ingest end to end: K simulated devices → a private Mosquitto (the project's config)
→ ``smokehouse ingest`` → the bus → the ``iot-enrich-and-store`` workflow (and ``iot-alarms`` when
its rule is in the tree) on real Celery workers → PostgreSQL, with live updates over Redis.

Two phases:

1. **throughput** — every device publishes its share of ``--messages`` QoS 1 messages (``--probes``
   readings each) as fast as MQTT takes them; readings/s = readings stored / (last stored - first
   published).
2. **latency** — ``--rate`` readings/s spread over the devices for ``--seconds``; for each message,
   publish → stored (a poller reads new rows every 50 ms, so add up to 50 ms of granularity) and
   publish → received on the GraphQL ``readings(deviceId)`` subscription (``graphql-transport-ws``
   against a ``smokehouse api`` process; ``--live realtime``: ``app.realtime.subscribe``).

Then: ``lost`` = readings published but not stored, ``duplicated`` = messages put on the bus more
than once (ingest's dedupe) plus live updates received more than once.

    python bench/ingest.py [--devices 20] [--messages 15000] [--probes 4] [--rate 1000]
                           [--seconds 15] [--workers 2] [--concurrency 2] [--live graphql]
                           [--batch-wait S] [--no-alarms]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ROOT, SECRET_KEY, PeakRss, emit, fresh_postgres, steady_client, workers

#: The GraphQL subscriber logs in as a viewer: a session token, never the key's secret.
VIEWER_SECRET = "bench-viewer-3Wq8Zk5Tn2Xc7Lm4Rp9V"
VIEWER_KEYS = f"AKBENCHVIEW:{VIEWER_SECRET}:viewer"


def _viewer_token() -> str:
    sys.path.insert(0, str(ROOT))
    from app.auth import AccessKey, issue_session

    return issue_session(AccessKey("AKBENCHVIEW", VIEWER_SECRET, "viewer"))


@contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    from tests.services import free_port, tcp_open, wait_for

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        cwd=tmp,
    )
    try:
        wait_for(lambda: tcp_open(f"redis://127.0.0.1:{port}", port), 10, what="redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class Devices:
    """K paho MQTT 5 clients, one per simulated device, each with its own seq."""

    def __init__(self, url: str, count: int, probes: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from app.mqtt import MqttEndpoint

        endpoint = MqttEndpoint.from_url(url)
        self.ids = [f"bench{n:03d}" for n in range(count)]
        self.probes = probes
        self.seq = dict.fromkeys(self.ids, 0)
        self.published: dict[tuple[str, int], float] = {}
        self.clients = []
        for device_id in self.ids:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
            )
            client.max_inflight_messages_set(1000)
            client.connect(endpoint.host, endpoint.port)
            client.loop_start()
            self.clients.append(client)

    def payload(self, device_id: str, seq: int, now: float) -> bytes:
        probes = [
            {
                "id": "pit" if n == 0 else f"meat{n}",
                "temp_c": 100.0 + (seq % 50) / 10 + n,
                "status": "ok",
            }
            for n in range(self.probes)
        ]
        return json.dumps(
            {"device_id": device_id, "seq": seq, "ts": rfc3339(now), "probes": probes}
        ).encode()

    def publish(self, index: int) -> Any:
        device_id = self.ids[index]
        self.seq[device_id] += 1
        seq = self.seq[device_id]
        now = time.time()
        self.published[(device_id, seq)] = now
        return self.clients[index].publish(
            f"smokehouse/{device_id}/telemetry", self.payload(device_id, seq, now), qos=1
        )

    def burst(self, messages: int) -> None:
        """Every device publishes its share as fast as it can (one thread per device)."""

        def run(index: int, count: int) -> None:
            infos = [self.publish(index) for _ in range(count)]
            for info in infos:
                info.wait_for_publish(120)

        share, extra = divmod(messages, len(self.ids))
        threads = [
            threading.Thread(target=run, args=(i, share + (1 if i < extra else 0)))
            for i in range(len(self.ids))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def paced(self, messages_per_s: float, seconds: float) -> list[tuple[str, int]]:
        """Round-robin over the devices at a steady rate; returns the keys published."""
        keys: list[tuple[str, int]] = []
        interval = 1.0 / messages_per_s
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed / interval) + 1
            while n < due:
                index = n % len(self.ids)
                self.publish(index)
                keys.append((self.ids[index], self.seq[self.ids[index]]))
                n += 1
            time.sleep(max(0.0, (n * interval) - (time.monotonic() - start)))
        return keys

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


class Spawned:
    """A bench helper in a process of its own, driven over a pipe: the 20 paho network threads
    of the devices, the poller and the live subscriber sharing one interpreter would delay one
    another's publishes and timestamps, and the bench would measure itself. The child answers
    every ``(operation, *args)`` it receives; ``close`` is its last."""

    def __init__(self, serve: Any, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, *args), daemon=True)
        self.process.start()

    def call(self, operation: str, *args: Any) -> Any:
        self.connection.send((operation, *args))
        return self.connection.recv()

    def close(self) -> None:
        if self.process.is_alive():
            self.call("close")
        self.process.join(15)


class DeviceProcess(Spawned):
    """:class:`Devices` in a process of its own; publish times come back with each answer."""

    def __init__(self, url: str, count: int, probes: int) -> None:
        super().__init__(_serve_devices, url, count, probes)
        self.published: dict[tuple[str, int], float] = {}
        self._call("ready")

    def _call(self, operation: str, *args: Any) -> Any:
        result, published = self.call(operation, *args)
        self.published.update(published)
        return result

    def burst(self, messages: int) -> None:
        self._call("burst", messages)

    def paced(self, messages_per_s: float, seconds: float) -> list[tuple[str, int]]:
        keys: list[tuple[str, int]] = self._call("paced", messages_per_s, seconds)
        return keys


def _serve_devices(connection: Any, url: str, count: int, probes: int) -> None:
    devices = Devices(url, count, probes)
    while True:
        operation, *args = connection.recv()
        known = len(devices.published)
        result = None
        if operation == "close":
            devices.close()
        elif operation != "ready":
            result = getattr(devices, operation)(*args)
        fresh = dict(list(devices.published.items())[known:])  # dicts keep insertion order
        connection.send((result, fresh))
        if operation == "close":
            return


class StoredPoller(threading.Thread):
    """When each (device, seq) first shows up in iot_readings (its first probe's row)."""

    WINDOW = 20000  # ids: concurrent transactions commit out of id order

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        from sqlalchemy import create_engine

        self.engine = create_engine(database_url)
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        self.last_id = 0

    def run(self) -> None:
        from sqlalchemy import text

        query = text(
            "SELECT id, device_id, seq FROM iot_readings WHERE id > :floor AND probe_id = 'pit'"
        )
        while not self.stop.is_set():
            with self.engine.connect() as connection:
                rows = connection.execute(query, {"floor": self.last_id - self.WINDOW}).all()
            now = time.time()
            for row in rows:
                self.seen.setdefault((row.device_id, row.seq), now)
                self.last_id = max(self.last_id, row.id)
            self.stop.wait(0.05)
        self.engine.dispose()


class LiveSubscriber(threading.Thread):
    """``app.realtime.subscribe`` on every device's ``readings:`` channel."""

    def __init__(self, settings: Any, device_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.device_ids = device_ids
        self.received: dict[tuple[str, int], float] = {}
        self.duplicates = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self.main())

    def snapshot(self) -> dict[tuple[str, int], float]:
        return self.received

    def close(self) -> None:
        self.stop.set()
        self.join(10)

    async def main(self) -> None:
        from app import realtime

        async def consume(device_id: str) -> None:
            async for message in realtime.subscribe(self.settings, f"readings:{device_id}"):
                key = (message["device_id"], message["seq"])
                if key in self.received:
                    self.duplicates += 1
                else:
                    self.received[key] = time.time()

        tasks = [asyncio.create_task(consume(d)) for d in self.device_ids]
        await asyncio.sleep(1.0)
        self.ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class GraphQLSubscriber(LiveSubscriber):
    """The dashboard's way: GraphQL ``readings(deviceId)`` subscriptions over
    ``graphql-transport-ws`` against a real ``smokehouse api`` process."""

    def __init__(self, url: str, api_key: str, device_ids: list[str]) -> None:
        super().__init__(None, device_ids)
        self.url = url
        self.api_key = api_key

    async def main(self) -> None:
        import websockets

        query = "subscription($d: ID!) { readings(deviceId: $d) { deviceId seq } }"
        async with websockets.connect(
            self.url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"x-api-key": self.api_key}})
            )
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise SystemExit(f"GraphQL refused the subscription: {ack}")
            for n, device_id in enumerate(self.device_ids):
                await ws.send(
                    json.dumps(
                        {
                            "id": str(n),
                            "type": "subscribe",
                            "payload": {"query": query, "variables": {"d": device_id}},
                        }
                    )
                )
            await asyncio.sleep(1.0)
            self.ready.set()
            while not self.stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    return
                now = time.time()
                message = json.loads(raw)
                if message.get("type") != "next":
                    continue
                reading = message["payload"]["data"]["readings"]
                key = (reading["deviceId"], reading["seq"])
                if key in self.received:
                    self.duplicates += 1
                else:
                    self.received[key] = now


class SubscriberProcess(Spawned):
    """:class:`GraphQLSubscriber` in a process of its own (see :class:`Spawned`)."""

    def __init__(self, url: str, api_key: str, device_ids: list[str]) -> None:
        super().__init__(_serve_subscriber, url, api_key, device_ids)
        self.received: dict[tuple[str, int], float] = {}
        self.duplicates = 0
        self.ready: bool = self.call("ready")

    def snapshot(self) -> dict[tuple[str, int], float]:
        self.received, self.duplicates = self.call("snapshot")
        return self.received


def _serve_subscriber(connection: Any, url: str, api_key: str, device_ids: list[str]) -> None:
    live = GraphQLSubscriber(url, api_key, device_ids)
    live.start()
    while True:
        operation, *_ = connection.recv()
        if operation == "ready":
            connection.send(live.ready.wait(15))
            continue
        connection.send((dict(live.received), live.duplicates))
        if operation == "close":
            live.close()
            return


def cpu_by_process(roots: dict[str, list[int]], database_url: str) -> dict[tuple[str, int], float]:
    """CPU seconds used so far by each process of the given trees and by PostgreSQL's backends
    for this database: what a run costs, whatever else the machine is doing."""
    import psutil
    from sqlalchemy import create_engine, text

    used: dict[tuple[str, int], float] = {}
    for role, pids in roots.items():
        for pid in pids:
            try:
                parent = psutil.Process(pid)
                for process in [parent, *parent.children(recursive=True)]:
                    times = process.cpu_times()
                    used[(role, process.pid)] = times.user + times.system
            except psutil.Error:
                continue
    engine = create_engine(database_url)
    with engine.connect() as connection:
        backends = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        for pid in backends:
            try:
                times = psutil.Process(pid).cpu_times()
                used[("postgres", pid)] = times.user + times.system
            except psutil.Error:
                continue
    engine.dispose()
    return used


def cpu_spent(
    before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]
) -> dict[str, float]:
    spent: dict[str, float] = {}
    for key, seconds in after.items():
        spent[key[0]] = spent.get(key[0], 0.0) + seconds - before.get(key, 0.0)
    return spent


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def latency_stages(
    session: Any, keys: set[tuple[str, int]], published: dict[tuple[str, int], float]
) -> dict[str, Any]:
    """Where the latency phase's time went, per Telemetry Batch event: publish → on the bus
    (the oldest message; MQTT, the batch wait, the write), on the bus → a worker starts each
    rule's delivery (enqueue, Celery), and the delivery's run: p50, p99 and max of each."""
    from sqlalchemy import func, select

    from app.bus.models import Delivery, DeliveryAttempt, Event

    spans: dict[str, list[float]] = {}
    rows = session.execute(
        select(Event.envelope, Event.received_at, Delivery.rule_name, DeliveryAttempt)
        .join(Delivery, Delivery.event_id == Event.id)
        .join(DeliveryAttempt, DeliveryAttempt.delivery_id == Delivery.id)
        .where(Event.detail_type == "Telemetry Batch", DeliveryAttempt.number == 1)
    )
    for envelope, received_at, rule, attempt in rows:
        sent = [
            published[k]
            for m in envelope["detail"]["messages"]
            if (k := (m["device_id"], m["seq"])) in keys
        ]
        if not sent:
            continue
        on_bus = received_at.timestamp()
        if rule == "iot-enrich-and-store":
            spans.setdefault("to_bus", []).append((on_bus - min(sent)) * 1000)
            spans.setdefault("oldest_to_stored", []).append(
                (attempt.finished_at.timestamp() - min(sent)) * 1000
            )
        spans.setdefault(f"queued:{rule}", []).append(
            (attempt.started_at.timestamp() - on_bus) * 1000
        )
        spans.setdefault(f"run:{rule}", []).append(
            (attempt.finished_at - attempt.started_at).total_seconds() * 1000
        )
    stages: dict[str, Any] = {
        name: [round(statistics.median(v), 1), round(percentile(v, 0.99), 1), round(max(v), 1)]
        for name, v in sorted(spans.items())
    }
    stages["batches"] = len(spans.get("to_bus", []))
    stages["retried_deliveries"] = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.attempts > 1)
    )
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--messages", type=int, default=15000)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=1000.0, help="readings/s, latency phase")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--live",
        choices=["graphql", "realtime"],
        default="graphql",
        help="measure live updates via the GraphQL subscription (a real API process) or "
        "app.realtime.subscribe in this process",
    )
    parser.add_argument("--batch-wait", type=float, default=None, help="ingest batch wait, s")
    parser.add_argument("--no-alarms", action="store_true", help="disable the iot-alarms rule")
    args = parser.parse_args()

    from sqlalchemy import func, select

    import app.wiring  # noqa: F401  (fills the registries: state machines as bus targets)
    from app.bus.definitions import apply_all as apply_rules
    from app.bus.models import Event, Rule
    from app.config import load_settings
    from app.db import get_database, utcnow
    from app.iot.models import Device, Reading
    from app.migrate import upgrade
    from app.workflows.definitions import apply_all as apply_machines
    from tests.services import mosquitto

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ingest-")))
        database_url = stack.enter_context(fresh_postgres())
        redis_url = stack.enter_context(private_redis(tmp))
        mqtt_url = stack.enter_context(mosquitto(tmp))
        values: dict[str, Any] = {
            "data_dir": tmp / "data",
            "database_url": database_url,
            "broker_url": redis_url,
            "redis_url": redis_url,
            "mqtt_url": mqtt_url,
            "log_level": "WARNING",
            "log_format": "console",
        }
        settings = load_settings(**values)
        upgrade(settings.sqlalchemy_url)
        apply_machines(settings)
        apply_rules(settings)
        database = get_database(settings.sqlalchemy_url)
        if args.no_alarms:
            from app.bus.service import set_rule_state

            with database.session() as session:
                set_rule_state(session, "default", "iot-alarms", "DISABLED")
        with database.session() as session:
            rules = sorted(
                r.name
                for r in session.scalars(
                    select(Rule).where(Rule.name.like("iot-%"), Rule.state == "ENABLED")
                )
            )
        device_ids = [f"bench{n:03d}" for n in range(args.devices)]
        with database.session() as session:
            for device_id in device_ids:
                session.add(
                    Device(
                        id=device_id,
                        name=device_id,
                        mqtt_username=device_id,
                        notify_urls=[],
                        home_assistant_discovery=False,
                        created_at=utcnow(),
                    )
                )

        env = {f"SMOKEHOUSE_{k.upper()}": str(v) for k, v in values.items()}
        worker_procs = stack.enter_context(
            workers(
                env,
                args.workers,
                "--queues=workflows,bus,default,iot",
                f"--concurrency={args.concurrency}",
            )
        )
        ingest_log = tmp / "ingest.log"
        ingest = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "ingest", "--client-id=bench-ingest"],
            env={
                **os.environ,
                **env,
                **(
                    {"SMOKEHOUSE_IOT_BATCH_MAX_WAIT_SECONDS": str(args.batch_wait)}
                    if args.batch_wait is not None
                    else {}
                ),
                "PYTHONPATH": str(ROOT),
                "SMOKEHOUSE_LOG_LEVEL": "INFO",
            },
            stdout=ingest_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(lambda: (ingest.terminate(), ingest.wait(15)))
        if not wait_until(lambda: "ingest connected" in ingest_log.read_text(), 30):
            raise SystemExit(f"ingest did not connect:\n{ingest_log.read_text()[-2000:]}")
        time.sleep(0.5)

        poller = StoredPoller(database_url)
        poller.start()
        stack.callback(poller.stop.set)
        if args.live == "graphql":
            from tests.services import free_port

            http_port = free_port()
            api = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "api", "--no-migrate"],
                env={
                    **os.environ,
                    **env,
                    "PYTHONPATH": str(ROOT),
                    "SMOKEHOUSE_HTTP_PORT": str(http_port),
                    "SMOKEHOUSE_ACCESS_KEYS": VIEWER_KEYS,
                    "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
                },
                stdout=(tmp / "api.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            stack.callback(lambda: (api.terminate(), api.wait(15)))
            import httpx

            def api_up() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{http_port}/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            if not wait_until(api_up, 60):
                raise SystemExit(f"api did not start:\n{(tmp / 'api.log').read_text()[-2000:]}")
            live: LiveSubscriber | SubscriberProcess = SubscriberProcess(
                f"ws://127.0.0.1:{http_port}/graphql", _viewer_token(), device_ids
            )
        else:
            live = LiveSubscriber(settings, device_ids)
            live.start()
            live.ready.wait(15)
        stack.callback(live.close)
        devices = DeviceProcess(mqtt_url, args.devices, args.probes)
        stack.callback(devices.close)

        # Warm-up: every worker process imports, connects and compiles once.
        devices.burst(args.devices * 5)
        warm = args.devices * 5
        if not wait_until(lambda: len(poller.seen) >= warm, 60):
            raise SystemExit(f"warm-up not stored ({len(poller.seen)}/{warm})")

        # Phase 1: throughput.
        roots = {"workers": [p.pid for p in worker_procs], "ingest": [ingest.pid]}
        watched = {f"worker_{n}": p.pid for n, p in enumerate(worker_procs)}
        rss = stack.enter_context(PeakRss({**watched, "ingest": ingest.pid}))
        cpu_before = cpu_by_process(roots, database_url)
        before = set(devices.published)
        started = time.time()
        devices.burst(args.messages)
        burst_keys = [k for k in devices.published if k not in before]
        published_s = time.time() - started
        wait_until(lambda: all(k in poller.seen for k in burst_keys), 120)
        stored_at = [poller.seen[k] for k in burst_keys if k in poller.seen]
        elapsed = (max(stored_at) - started) if stored_at else float("nan")
        readings_per_s = len(stored_at) * args.probes / elapsed
        spent = cpu_spent(cpu_before, cpu_by_process(roots, database_url))
        burst_readings = len(burst_keys) * args.probes
        cpu_ms = {k: round(v * 1000 / burst_readings * 1000, 1) for k, v in spent.items()}
        ceiling = (os.cpu_count() or 1) * 1e6 / sum(cpu_ms.values())

        # Phase 2: latency at a steady rate, once the queues are empty again (the alarm
        # workflows of phase 1 may still be running).
        import redis

        queues = redis.Redis.from_url(redis_url)
        drained = wait_until(
            lambda: sum(int(queues.llen(q)) for q in ("bus", "workflows")) == 0, 120
        )
        time.sleep(1.0)
        steady_client()
        keys = devices.paced(args.rate / args.probes, args.seconds)

        def arrived() -> bool:
            received = live.snapshot()
            return all(k in poller.seen and k in received for k in keys)

        wait_until(arrived, 30)
        live_received = live.snapshot()
        stored_ms = [
            (poller.seen[k] - devices.published[k]) * 1000 for k in keys if k in poller.seen
        ]
        sub_ms = [
            (live_received[k] - devices.published[k]) * 1000 for k in keys if k in live_received
        ]

        # Drain, then count.
        everything = len(devices.published)
        wait_until(lambda: len(poller.seen) >= everything, 30)
        with database.session() as session:
            stored_readings = session.scalar(select(func.count()).select_from(Reading)) or 0
            put = [
                (m["device_id"], m["seq"])
                for envelope in session.scalars(
                    select(Event.envelope).where(Event.detail_type == "Telemetry Batch")
                )
                for m in envelope["detail"]["messages"]
            ]
            received = {
                (row.device_id, row.seq): row.received_at.timestamp()
                for row in session.execute(
                    select(Reading.device_id, Reading.seq, Reading.received_at).where(
                        Reading.probe_id == "pit"
                    )
                )
            }
            stages = latency_stages(session, set(keys), devices.published)
        ingest_ms = [(received[k] - devices.published[k]) * 1000 for k in keys if k in received]
        burst_received = [received[k] for k in burst_keys if k in received]
        ingest_per_s = len(burst_received) * args.probes / (max(burst_received) - started)
        lost = everything * args.probes - stored_readings
        duplicated = (len(put) - len(set(put))) + live.duplicates

    emit(
        {
            "bench": "ingest",
            "devices": args.devices,
            "probes": args.probes,
            "messages": args.messages,
            "publish_readings_per_s": round(args.messages * args.probes / published_s),
            "readings_per_s": round(readings_per_s),
            "ingested_readings_per_s": round(ingest_per_s),
            "cpu_ms_per_1000_readings": cpu_ms,
            "cpu_ceiling_readings_per_s": round(ceiling),
            "rate": args.rate,
            "p50_ms": round(statistics.median(stored_ms), 1) if stored_ms else None,
            "p99_ms": round(percentile(stored_ms, 0.99), 1),
            "sub_p50_ms": round(statistics.median(sub_ms), 1) if sub_ms else None,
            "sub_p99_ms": round(percentile(sub_ms, 0.99), 1),
            "ingest_p50_ms": round(statistics.median(ingest_ms), 1) if ingest_ms else None,
            "ingest_p99_ms": round(percentile(ingest_ms, 0.99), 1),
            "stages_p50_p99_ms": stages,
            "live": args.live,
            "sub_received": len(sub_ms),
            "drained_before_latency": drained,
            "sub_expected": len(keys),
            "lost": lost,
            "duplicated": duplicated,
            "rss_mb": rss.peaks,
            "rules": rules,
            "batch_wait_s": args.batch_wait,
            "workers": args.workers,
            "concurrency": args.concurrency,
        }
    )


if __name__ == "__main__":
    main()
