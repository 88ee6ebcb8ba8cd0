"""kill -9 of the ingest process while 10,000 QoS 1 readings arrive: after restarts every reading
is stored exactly once and put on the bus exactly once.

Why it holds: ingest acks a message only after its batch committed (and the delivery was
enqueued, or left to the outbox sweeper); the persistent MQTT session makes Mosquitto keep and
redeliver everything unacknowledged; (device, seq) dedupe drops what was committed but not acked.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.bus.models import Event
from app.bus.outbox import sweep
from app.iot.models import IngestedMessage, Reading
from tests.integration.iot.conftest import (
    IotStack,
    add_device,
    encode,
    iot_stack,
    publisher,
    telemetry,
    telemetry_topic,
)
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = 4
PER_DEVICE = 2500  # 10,000 readings (one probe each)


def ingested(stack: IotStack) -> int:
    with stack.session() as session:
        return int(session.scalar(select(func.count()).select_from(IngestedMessage)) or 0)


def test_kill_9_of_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with iot_stack("production", tmp_path) as stack:
        for n in range(DEVICES):
            add_device(stack.settings.sqlalchemy_url, f"pi{n}")
        stack.start_worker()
        ingest = stack.start_ingest()

        def publish_all() -> None:
            with publisher(stack.mqtt_url) as client:
                client.publish_many(
                    [
                        (
                            telemetry_topic(f"pi{n}"),
                            encode(
                                telemetry(
                                    f"pi{n}",
                                    seq,
                                    [{"id": "pit", "temp_c": 100 + seq / 100, "status": "ok"}],
                                )
                            ),
                        )
                        for seq in range(1, PER_DEVICE + 1)
                        for n in range(DEVICES)
                    ]
                )

        sender = threading.Thread(target=publish_all)
        sender.start()
        kills = 0
        for threshold in (1500, 6000):
            wait_for(lambda t=threshold: ingested(stack) >= t, 60, what=f"{threshold} ingested")
            stack.kill9(ingest)
            kills += 1
            time.sleep(0.5)  # messages keep arriving and queue in the session meanwhile
            ingest = stack.start_ingest()
        sender.join(60)
        assert not sender.is_alive()

        total = DEVICES * PER_DEVICE

        def all_stored() -> bool:
            sweep(stack.settings)  # what the scheduler does: enqueue deliveries a kill orphaned
            with stack.session() as session:
                return session.scalar(select(func.count()).select_from(Reading)) == total

        try:
            wait_for(all_stored, 60, interval=1.0, what="every reading stored")
        except AssertionError:
            raise AssertionError(stack.logs()) from None

        with stack.session() as session:
            distinct = session.scalar(
                select(func.count()).select_from(
                    select(Reading.device_id, Reading.seq).distinct().subquery()
                )
            )
            assert distinct == total
            put = [
                (m["device_id"], m["seq"])
                for envelope in session.scalars(
                    select(Event.envelope).where(Event.detail_type == "Telemetry Batch")
                )
                for m in envelope["detail"]["messages"]
            ]
        assert kills == 2
        assert len(put) == total
        assert len(set(put)) == total
