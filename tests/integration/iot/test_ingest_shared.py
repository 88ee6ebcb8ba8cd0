"""Two ``smokehouse ingest`` processes on one Mosquitto split the telemetry through the shared
subscription: both take a share, every message is put on the bus exactly once."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.bus.models import Event
from app.iot.models import IngestedMessage
from tests.integration.iot.conftest import (
    add_device,
    encode,
    iot_stack,
    publisher,
    telemetry,
    telemetry_topic,
)
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES = 2000


def test_two_ingest_processes_share_the_load(tmp_path: Path) -> None:
    with iot_stack("production", tmp_path) as stack:
        add_device(stack.settings.sqlalchemy_url, "pi1")
        first = stack.start_ingest("ingest-a")
        second = stack.start_ingest("ingest-b")
        with publisher(stack.mqtt_url) as client:
            client.publish_many(
                [(telemetry_topic("pi1"), encode(telemetry("pi1", seq))) for seq in range(MESSAGES)]
            )

        def ingested() -> bool:
            with stack.session() as session:
                count = session.scalar(select(func.count()).select_from(IngestedMessage))
            return count == MESSAGES

        wait_for(ingested, 60, interval=0.3, what="every message ingested")
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
            process.wait(20)
        log = (tmp_path / "ingest.log").read_text()
        accepted = [int(n) for n in re.findall(r"ingest stopped: (\d+) accepted", log)]
        assert len(accepted) == 2, log[-3000:]
        assert sum(accepted) == MESSAGES
        assert min(accepted) > 0, f"one process got everything: {accepted}"
        with stack.session() as session:
            put = [
                m["seq"]
                for envelope in session.scalars(
                    select(Event.envelope).where(Event.detail_type == "Telemetry Batch")
                )
                for m in envelope["detail"]["messages"]
            ]
        assert sorted(put) == list(range(MESSAGES))
