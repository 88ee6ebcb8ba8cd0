"""Alarms through the whole system, in both modes: a device publishes over a real Mosquitto,
ingest puts the batch on the bus, the shipped ``iot-alarms`` rule runs the shipped Express
state machine on a real worker, the alarm is stored, a live message goes out, and Apprise
notifies a local HTTP receiver from the worker's ``iot`` queue; the availability topic saying
``offline`` (the device's LWT) raises ``device_offline`` and ``online`` clears it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.iot.alarms.models import Alarm
from app.iot.models import Device, Probe
from tests.integration.iot.conftest import (
    add_device,
    encode,
    iot_stack,
    publisher,
    telemetry,
    telemetry_topic,
)
from tests.integration.iot.test_alarms import Receiver
from tests.services import wait_for
from workers.celery_app import create_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OFFLINE_SECONDS = 3


def meat(seq: int, temp: float) -> bytes:
    return encode(telemetry("bbq1", seq, probes=[{"id": "meat1", "temp_c": temp, "status": "ok"}]))


@pytest.mark.parametrize("mode", ["embedded", "production"])
def test_alarms_fire_notify_and_clear_through_the_stack(mode: str, tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        # the receiver listens on 127.0.0.1: the worker's egress policy allows exactly that
        with iot_stack(mode, tmp_path, egress_allow="127.0.0.1") as stack:
            add_device(
                stack.settings.sqlalchemy_url, "bbq1", name="Smoker", notify_urls=[receiver.url]
            )
            with stack.session() as session:
                session.add(
                    Probe(
                        device_id="bbq1",
                        probe_id="meat1",
                        name="Brisket",
                        role="food",
                        target_c=60.0,
                    )
                )
            stack.spawn(
                "worker",
                "worker",
                "--queues=workflows,bus,default,iot",
                "--concurrency=2",
                env={"SMOKEHOUSE_IOT_OFFLINE_SECONDS": str(OFFLINE_SECONDS)},
            )
            stack.start_ingest()

            def alarms() -> list[tuple[str, str]]:
                with stack.session() as session:
                    return [
                        (a.kind, a.state) for a in session.scalars(select(Alarm).order_by(Alarm.id))
                    ]

            def until(expected: list[tuple[str, str]], what: str) -> None:
                try:
                    wait_for(lambda: alarms() == expected, 60, interval=0.2, what=what)
                except AssertionError:
                    raise AssertionError(f"{what}: {alarms()}\n{stack.logs()}") from None

            def seen() -> bool:
                with stack.session() as session:
                    device = session.get(Device, "bbq1")
                    return device is not None and device.last_seen_at is not None

            with publisher(stack.mqtt_url) as client:
                # until ingest has demonstrably subscribed (its SUBSCRIBE follows the CONNACK;
                # on a loaded machine a first message can beat it): the same seq, deduped
                for _ in range(15):
                    client.publish(telemetry_topic("bbq1"), meat(1, 55.0))
                    try:
                        wait_for(seen, 2, interval=0.1, what="ingest")
                        break
                    except AssertionError:
                        continue
                client.publish(telemetry_topic("bbq1"), meat(2, 61.0))
                client.publish(telemetry_topic("bbq1"), meat(3, 61.5))
                until([("target_reached", "open")], "the target alarm")
                wait_for(lambda: len(receiver.posts) >= 1, 60, what="the notification")
                assert receiver.posts[0]["title"] == "Smoker: Target reached"
                # batches may be judged out of order (two worker processes): then the older
                # reading is skipped, and the alarm opens on the newer one
                assert receiver.posts[0]["message"] in {
                    "Brisket reached its target 60.0 °C: 61.0 °C",
                    "Brisket reached its target 60.0 °C: 61.5 °C",
                }

                client.publish("smokehouse/bbq1/status", b"offline", retain=True)
                until([("target_reached", "open"), ("device_offline", "open")], "offline")
                client.publish("smokehouse/bbq1/status", b"online", retain=True)
                until([("target_reached", "open"), ("device_offline", "cleared")], "online")
                # silence: the scheduler's sweep (sent by hand here) finds the device quiet
                time.sleep(OFFLINE_SECONDS + 1)
                celery = create_celery(stack.settings)
                celery.send_task("iot_alarms.sweep_offline", queue="iot")
                silent = [("device_offline", "cleared"), ("device_offline", "open")]
                until([("target_reached", "open"), *silent], "silent")
                client.publish(telemetry_topic("bbq1"), meat(4, 58.0))
                done = [("target_reached", "cleared"), ("device_offline", "cleared")]
                until([done[0], done[1], done[1]], "cleared")
            wait_for(lambda: len(receiver.posts) >= 6, 60, what="one per transition")
            assert sorted(p["title"] for p in receiver.posts) == [
                "Smoker: Target reached",
                "Smoker: Target reached (cleared)",
                *["Smoker: Thermometer offline"] * 2,
                *["Smoker: Thermometer offline (cleared)"] * 2,
            ]
            assert any("no data for" in p["message"] for p in receiver.posts)
    finally:
        receiver.close()
