"""The publisher and the offline buffer against a real Mosquitto 2 (started per test)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from device_harness import Broker, Collector, free_port, wait_until

from smokehouse_device.agent import Clock, Sampler
from smokehouse_device.buffer import BufferedReading, ReadingBuffer
from smokehouse_device.publisher import MqttPublisher, MqttSettings, backoff_delay
from smokehouse_device.readings import Reading

pytestmark = pytest.mark.integration

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class StaticProbe:
    def __init__(self, probe_id: str, reading: Reading) -> None:
        self._id = probe_id
        self.reading = reading

    @property
    def id(self) -> str:
        return self._id

    def read(self) -> Reading:
        return self.reading

    def close(self) -> None:
        pass


PROBES = [
    StaticProbe("pit", Reading.ok(110.256)),
    StaticProbe("meat1", Reading.ok(64.5)),
    StaticProbe("meat2", Reading.open("unplugged")),
]


def settings(port: int, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "max_inflight": 20,
        "resend_wait_s": 5.0,
    }
    values.update(overrides)
    return MqttSettings(**values)


class Rig:
    """Buffer + publisher + sampler for one device, recording what was sampled."""

    def __init__(self, path: Path, port: int, device_id: str, **overrides: Any) -> None:
        self.device_id = device_id
        self.buffer = ReadingBuffer(path, overrides.pop("max_readings", 100_000))
        self.publisher = MqttPublisher(settings(port, **overrides), device_id, self.buffer)
        self.sent: dict[int, str] = {}
        self.sampler = Sampler(device_id, PROBES, self.buffer, Clock(), self._on_sample)

    def _on_sample(self, row: BufferedReading) -> None:
        self.sent[row.seq] = row.payload
        self.publisher.notify()

    def start(self) -> Rig:
        self.publisher.start()
        return self

    def sample(self, n: int) -> None:
        for _ in range(n):
            self.sampler.sample_once()

    def close(self) -> None:
        self.publisher.stop()
        self.buffer.close()


@pytest.fixture
def rigs() -> Any:
    made: list[Rig] = []

    def make(path: Path, port: int, device_id: str, **overrides: Any) -> Rig:
        rig = Rig(path, port, device_id, **overrides)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        with contextlib.suppress(Exception):
            rig.close()


def seqs(collector: Collector) -> list[int]:
    return [p["seq"] for p in collector.telemetry()]


def test_backoff_delay_is_exponential_with_jitter() -> None:
    import random

    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(60.0, 1.0 * 2**attempt)
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_messages_arrive_in_order_with_the_contract_shape(
    tmp_path: Path, broker: Broker, collectors: Callable[..., Collector], rigs: Any
) -> None:
    collector = collectors(broker.port, "smokehouse/dev1/#")
    rig = rigs(tmp_path / "buf.sqlite3", broker.port, "dev1").start()
    assert rig.publisher.wait_connected(5)
    rig.sample(60)
    assert wait_until(lambda: len(collector.telemetry()) >= 60, 10)
    msgs = collector.snapshot("/telemetry")
    assert all(m.topic == "smokehouse/dev1/telemetry" and m.qos == 1 for m in msgs)
    payloads = [m.json() for m in msgs]
    assert [p["seq"] for p in payloads] == list(range(1, 61))
    for p in payloads:
        assert list(p) == ["device_id", "seq", "ts", "probes"]
        assert p["device_id"] == "dev1"
        assert TS_RE.match(p["ts"]), p["ts"]
        assert p["probes"] == [
            {"id": "pit", "temp_c": 110.26, "status": "ok"},
            {"id": "meat1", "temp_c": 64.5, "status": "ok"},
            {"id": "meat2", "temp_c": None, "status": "open"},
        ]
    # Deleted from the buffer once acknowledged.
    assert wait_until(lambda: len(rig.buffer) == 0, 5)
    assert rig.publisher.stats().acked == 60
    # Availability: online while running, offline (retained) after a graceful stop.
    assert collector.statuses()[0][0] == "online"
    rig.close()
    assert wait_until(lambda: collector.statuses()[-1][0] == "offline", 5)


def test_retained_online_on_connect(
    tmp_path: Path, broker: Broker, collectors: Callable[..., Collector], rigs: Any
) -> None:
    rig = rigs(tmp_path / "buf.sqlite3", broker.port, "dev-ret").start()
    assert rig.publisher.wait_connected(5)
    time.sleep(0.2)
    late = collectors(broker.port, "smokehouse/dev-ret/status")
    assert wait_until(lambda: late.statuses() != [], 5)
    assert late.statuses()[0] == ("online", True)


def test_outage_buffers_on_disk_and_replays_in_order(
    tmp_path: Path,
    make_broker: Callable[..., Broker],
    collectors: Callable[..., Collector],
    rigs: Any,
) -> None:
    # Broker persistence keeps the collector's session (and what is queued for it) across the
    # broker restart, so nothing is lost on the subscriber side either.
    broker = make_broker(persistence=True)
    collector = collectors(
        broker.port,
        "smokehouse/dev2/telemetry",
        client_id="collector-dev2",
        persistent_session=True,
    )
    path = tmp_path / "buf.sqlite3"
    rig: Rig = rigs(path, broker.port, "dev2").start()
    assert rig.publisher.wait_connected(5)

    stop = threading.Event()
    durations: list[float] = []
    real_sample = rig.sampler.sample_once

    def timed_sample() -> BufferedReading:
        t0 = time.monotonic()
        try:
            return real_sample()
        finally:
            durations.append(time.monotonic() - t0)

    rig.sampler.sample_once = timed_sample  # type: ignore[method-assign]
    sampler = threading.Thread(target=rig.sampler.run, args=(0.02, stop))
    sampler.start()
    try:
        assert wait_until(lambda: len(collector.telemetry()) >= 20, 10)

        broker.stop()
        assert wait_until(lambda: not rig.publisher.stats().connected, 5)
        before = len(rig.sent)
        outage_start = len(durations)
        time.sleep(1.5)
        buffered_on_disk = (
            sqlite3.connect(path).execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        )
        assert buffered_on_disk >= 30
        # The sampling loop kept its pace: ~75 samples expected in 1.5 s at 50 Hz.
        assert len(rig.sent) - before >= 40
        assert max(durations[outage_start:]) < 0.25

        broker.start()
        assert wait_until(lambda: rig.publisher.stats().connected, 10)
        time.sleep(0.3)
    finally:
        stop.set()
        sampler.join(5)

    sent = dict(rig.sent)
    assert wait_until(lambda: len(rig.buffer) == 0, 15), rig.publisher.stats()
    assert wait_until(lambda: set(seqs(collector)) >= set(sent), 10)
    received = collector.snapshot("/telemetry")
    got = [m.json()["seq"] for m in received]
    # Nothing missing, nothing unknown.
    assert set(got) == set(sent) == set(range(1, max(sent) + 1))
    # In order: the first arrival of each seq is strictly increasing.
    first: list[int] = []
    seen: set[int] = set()
    for s in got:
        if s not in seen:
            seen.add(s)
            first.append(s)
    assert first == sorted(first)
    # Duplicates only from QoS 1 re-sends of what was in flight when the broker went away.
    assert len(got) - len(set(got)) <= 20
    # Replays carry their original seq and payload byte for byte.
    for m in received:
        assert m.payload.decode() == sent[m.json()["seq"]]
    assert rig.publisher.stats().connects >= 2


def test_buffer_bound_drops_oldest_while_offline(
    tmp_path: Path,
    make_broker: Callable[..., Broker],
    collectors: Callable[..., Collector],
    rigs: Any,
) -> None:
    broker = make_broker(start=False)  # not running yet: everything is buffered
    rig = rigs(tmp_path / "buf.sqlite3", broker.port, "dev-bound", max_readings=25).start()
    rig.sample(40)
    assert len(rig.buffer) == 25
    assert rig.buffer.stats().dropped == 15
    broker.start()
    collector = collectors(broker.port, "smokehouse/dev-bound/telemetry")
    assert rig.publisher.wait_connected(10)
    assert wait_until(lambda: len(rig.buffer) == 0, 10)
    assert wait_until(lambda: sorted(set(seqs(collector))) == list(range(16, 41)), 5)


def test_buffer_survives_process_restart(
    tmp_path: Path, make_broker: Callable[..., Broker], collectors: Callable[..., Collector]
) -> None:
    path = tmp_path / "buf.sqlite3"
    broker = make_broker(start=False)
    first = Rig(path, broker.port, "dev3").start()
    first.sample(12)
    assert len(first.buffer) == 12
    first.close()  # the process exits with the broker unreachable

    broker.start()
    collector = collectors(broker.port, "smokehouse/dev3/telemetry")
    second = Rig(path, broker.port, "dev3").start()  # a new process on the same file
    try:
        assert len(second.buffer) == 12
        assert wait_until(lambda: len(set(seqs(collector))) >= 12, 10)
        received = collector.snapshot("/telemetry")
        assert [m.json()["seq"] for m in received][:12] == list(range(1, 13))
        for m in received:
            assert m.payload.decode() == first.sent[m.json()["seq"]]
        assert wait_until(lambda: len(second.buffer) == 0, 5)
        second.sample(1)
        assert second.sent == {13: second.sent[13]}  # numbering continues
        assert wait_until(lambda: 13 in seqs(collector), 5)
    finally:
        second.close()


def test_unreachable_broker_does_not_block_stop(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "buf.sqlite3", free_port(), "dev4").start()
    rig.sample(3)
    t0 = time.monotonic()
    rig.close()
    assert time.monotonic() - t0 < 5


def test_refused_reading_stays_buffered_and_is_retried(
    tmp_path: Path, make_broker: Callable[..., Broker], rigs: Any
) -> None:
    # Mosquitto answers an ACL-denied MQTT v5 publish with a failure PUBACK (not authorised).
    acl = tmp_path / "acl"
    acl.write_text("topic read smokehouse/#\ntopic write smokehouse/+/status\n")
    broker = make_broker(extra=f"acl_file {acl}\n")
    rig = rigs(tmp_path / "buf.sqlite3", broker.port, "dev-acl", refused_retry_s=0.2).start()
    assert rig.publisher.wait_connected(5)
    rig.sample(1)
    assert wait_until(lambda: rig.publisher.stats().refused >= 2, 5)
    stats = rig.publisher.stats()
    assert stats.acked == 0
    assert len(rig.buffer) == 1  # never deleted without a successful PUBACK


def test_a_reading_nobody_subscribed_to_stays_buffered_until_someone_is(
    tmp_path: Path, broker: Broker, collectors: Callable[..., Collector], rigs: Any
) -> None:
    """Mosquitto accepts a QoS 1 publish that no subscription matches with PUBACK 0x10 and
    drops it. After a broker restart (which does not keep the server's shared subscription)
    the readings sent before ingest resubscribed were lost that way; now they stay in the
    buffer and go again once someone listens."""
    rig = rigs(tmp_path / "buf.sqlite3", broker.port, "dev-alone", unheard_retry_s=0.2).start()
    assert rig.publisher.wait_connected(5)
    rig.sample(3)
    time.sleep(1.0)
    assert len(rig.buffer) == 3  # no subscriber yet: nothing deleted
    assert rig.publisher.stats().acked == 0
    collector = collectors(broker.port, "smokehouse/dev-alone/telemetry")
    assert wait_until(lambda: len(collector.telemetry()) >= 3, 10)
    assert [m.json()["seq"] for m in collector.snapshot("/telemetry")][:3] == [1, 2, 3]
    assert wait_until(lambda: len(rig.buffer) == 0, 5)
