"""Ingest against a real Mosquitto and both databases: telemetry and status become bus events,
duplicates are dropped, every kind of bad input is refused, dead-lettered, counted, and the
process keeps going."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from app.bus.models import Event
from app.db import get_database, utcnow
from app.iot.ingest.subscriber import Ingestor
from app.iot.models import Device, IngestDeadLetter, IngestedMessage
from tests.integration.iot.conftest import (
    add_device,
    encode,
    iot_overrides,
    publisher,
    running_ingest,
    telemetry,
    telemetry_topic,
)
from tests.services import wait_for

pytestmark = pytest.mark.integration


def events(database_url: str, detail_type: str) -> list[dict[str, Any]]:
    with get_database(database_url).session() as session:
        rows = session.scalars(
            select(Event).where(Event.detail_type == detail_type).order_by(Event.received_at)
        ).all()
        return [dict(row.envelope) for row in rows]


def batch_messages(database_url: str) -> list[dict[str, Any]]:
    return [m for e in events(database_url, "Telemetry Batch") for m in e["detail"]["messages"]]


def dead_letters(database_url: str) -> list[IngestDeadLetter]:
    with get_database(database_url).session() as session:
        return list(session.scalars(select(IngestDeadLetter).order_by(IngestDeadLetter.id)))


def rejected_count(kind: str) -> float:
    return REGISTRY.get_sample_value("smokehouse_iot_rejected_total", {"kind": kind}) or 0.0


@pytest.fixture
def settings(settings_factory: Any, database_url: str, mqtt_url: str) -> Any:
    return settings_factory(database_url=database_url, mqtt_url=mqtt_url)


def test_telemetry_becomes_one_event_and_updates_the_device(
    settings: Any, database_url: str, mqtt_url: str
) -> None:
    add_device(database_url, "bbq1")
    with running_ingest(settings) as ingestor, publisher(mqtt_url) as client:
        client.publish_many(
            [(telemetry_topic("bbq1"), encode(telemetry("bbq1", seq))) for seq in range(1, 21)]
        )
        wait_for(lambda: ingestor.stats.acked >= 20, 15, what="20 acks")
    messages = batch_messages(database_url)
    assert sorted(m["seq"] for m in messages) == list(range(1, 21))
    first = messages[0]
    assert set(first) == {"device_id", "seq", "ts", "received_at", "probes"}
    assert first["probes"][0] == {"id": "pit", "temp_c": 110.0, "status": "ok"}
    event = events(database_url, "Telemetry Batch")[0]
    assert event["source"] == "smokehouse.iot"
    with get_database(database_url).session() as session:
        device = session.get(Device, "bbq1")
        assert device is not None
        assert device.last_seq == 20
        assert device.last_seen_at is not None
        assert session.scalar(select(func.count()).select_from(IngestedMessage)) == 20


def test_a_redelivered_message_is_put_on_the_bus_once(
    settings: Any, database_url: str, mqtt_url: str
) -> None:
    add_device(database_url, "bbq1")
    payload = encode(telemetry("bbq1", 7))
    with running_ingest(settings) as ingestor, publisher(mqtt_url) as client:
        client.publish(telemetry_topic("bbq1"), payload)
        wait_for(lambda: ingestor.stats.acked >= 1, 20, what="first ack")
        client.publish(telemetry_topic("bbq1"), payload)  # QoS 1 at-least-once: the same again
        client.publish(telemetry_topic("bbq1"), encode(telemetry("bbq1", 8)))
        wait_for(lambda: ingestor.stats.acked >= 3, 20, what="three acks")
        assert ingestor.stats.duplicates == 1, ingestor.stats
    assert sorted(m["seq"] for m in batch_messages(database_url)) == [7, 8]


BAD: list[tuple[str, str, bytes]] = [
    ("not_json", "bbq1", b"{not json"),
    ("not_json", "bbq1", b"\xff\xfe binary"),
    ("schema", "bbq1", encode({"device_id": "bbq1", "seq": "1", "ts": "x", "probes": []})),
    ("schema", "bbq1", b"[1, 2, 3]"),
    (
        "schema",
        "bbq1",
        encode(telemetry("bbq1", 2, [{"id": "pit", "temp_c": None, "status": "ok"}])),
    ),
    (
        "not_finite",
        "bbq1",
        encode(telemetry("bbq1", 3, [{"id": "p", "temp_c": float("nan"), "status": "ok"}])),
    ),
    (
        "not_finite",
        "bbq1",
        b'{"device_id":"bbq1","seq":4,"ts":"2026-01-01T00:00:00Z",'
        b'"probes":[{"id":"p","temp_c":Infinity,"status":"ok"}]}',
    ),
    (
        "impossible",
        "bbq1",
        encode(telemetry("bbq1", 5, [{"id": "p", "temp_c": 4000.0, "status": "ok"}])),
    ),
    ("impossible", "bbq1", encode(telemetry("bbq1", 6, ts=utcnow() + timedelta(days=3)))),
    ("too_large", "bbq1", b"{" + b" " * (129 * 1024) + b"}"),
    ("unknown_device", "stranger", encode(telemetry("stranger", 1))),
    ("topic_mismatch", "bbq1", encode(telemetry("bbq2", 9))),  # a forged topic
]


def test_every_kind_of_bad_input_is_refused_dead_lettered_and_counted(
    settings: Any, database_url: str, mqtt_url: str
) -> None:
    add_device(database_url, "bbq1")
    add_device(database_url, "bbq2")
    kinds = sorted({kind for kind, _, _ in BAD})
    before = {kind: rejected_count(kind) for kind in kinds}
    strict = iot_overrides(accept_unknown_devices=False)
    with running_ingest(settings, strict) as ingestor, publisher(mqtt_url) as client:
        for _, device_id, payload in BAD:
            client.publish(telemetry_topic(device_id), payload)
        client.publish("smokehouse/bbq1/status", "maybe")  # not online/offline
        client.publish(telemetry_topic("bbq1"), encode(telemetry("bbq1", 100)))
        wait_for(lambda: ingestor.stats.acked >= len(BAD) + 2, 15, what="every message acked")
        assert ingestor._batcher is not None
        assert ingestor._batcher.is_alive()

    letters = dead_letters(database_url)
    assert sorted(d.kind for d in letters) == sorted([kind for kind, _, _ in BAD] + ["schema"])
    for letter in letters:
        assert letter.reason
        assert letter.topic.startswith("smokehouse/")
        assert len(letter.payload) <= 4096
    forged = next(d for d in letters if d.kind == "topic_mismatch")
    assert forged.device_id == "bbq1"
    assert "bbq2" in forged.reason
    for kind in kinds:
        expected = sum(1 for k, _, _ in BAD if k == kind) + (kind == "schema")
        assert rejected_count(kind) - before[kind] == expected, kind
    # Nothing refused reached the bus; the good message after them did.
    assert [m["seq"] for m in batch_messages(database_url)] == [100]


def test_status_changes_become_device_status_events_once(
    settings: Any, database_url: str, mqtt_url: str
) -> None:
    add_device(database_url, "bbq1")
    with running_ingest(settings) as ingestor, publisher(mqtt_url) as client:
        client.publish("smokehouse/bbq1/status", "online", retain=True)
        client.publish("smokehouse/bbq1/status", "online", retain=True)  # no change
        client.publish("smokehouse/bbq1/status", "offline", retain=True)
        wait_for(lambda: ingestor.stats.acked >= 3, 10, what="three acks")
    details = [e["detail"] for e in events(database_url, "Device Status")]
    assert [d["status"] for d in details] == ["online", "offline"]
    assert all(d["device_id"] == "bbq1" and d["received_at"].endswith("Z") for d in details)
    with get_database(database_url).session() as session:
        device = session.get(Device, "bbq1")
        assert device is not None
        assert device.availability == "offline"


def test_unknown_devices_are_created_when_accepted(
    settings: Any, database_url: str, mqtt_url: str
) -> None:
    iot = iot_overrides(accept_unknown_devices=True)
    with running_ingest(settings, iot) as ingestor, publisher(mqtt_url) as client:
        client.publish(telemetry_topic("demo"), encode(telemetry("demo", 1)))
        wait_for(lambda: ingestor.stats.acked >= 1, 10, what="an ack")
    assert [m["device_id"] for m in batch_messages(database_url)] == ["demo"]
    with get_database(database_url).session() as session:
        assert session.get(Device, "demo") is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_embedded_broker_gets_mqtt_311_with_a_persistent_session(
    settings_factory: Any, database_url: str, tmp_path: Path
) -> None:
    """amqtt speaks 3.1.1 only: ingest says so, falls back, and still receives and acks."""
    import asyncio
    import threading

    from amqtt.broker import Broker

    from app.iot.embedded_broker import broker_config
    from tests.services import free_port

    port = free_port()
    ready, done = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            broker = Broker(broker_config(port))
            await broker.start()
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.05)
            await broker.shutdown()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        settings = settings_factory(database_url=database_url, mqtt_url=f"mqtt://127.0.0.1:{port}")
        add_device(database_url, "bbq1")
        ingestor = Ingestor(settings, iot_overrides(), client_id="amqtt-ingest")
        ingestor.start()
        try:
            assert ingestor.wait_connected(10)
            assert ingestor.v5 is False
            # The device package's simulator falls back to 3.1.1 too.
            simulated = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "smokehouse_device",
                    "simulate",
                    f"--broker=mqtt://127.0.0.1:{port}",
                    "--device-id=bbq1",
                    "--count=5",
                    f"--buffer={tmp_path / 'buffer.sqlite3'}",
                    "--time-scale=1000",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert simulated.returncode == 0, simulated.stderr.decode()[-2000:]
            assert b"speaks MQTT 3.1.1 only" in simulated.stderr
            wait_for(lambda: ingestor.stats.acked >= 5, 10, what="acks over 3.1.1")
        finally:
            ingestor.stop()
    finally:
        done.set()
        thread.join(10)
    assert len({m["seq"] for m in batch_messages(database_url)}) == 5
    assert json.loads(json.dumps(batch_messages(database_url)))  # plain JSON
