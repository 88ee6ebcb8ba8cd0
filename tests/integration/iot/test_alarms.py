"""Alarms against the real databases (SQLite and PostgreSQL) and real Apprise over HTTP: they
open once and clear with hysteresis, survive a restart, ignore a redelivered batch, watch for
silent devices, and notify a local HTTP receiver once per transition unless acknowledged or
silenced."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.db import _databases, get_database
from app.egress import policy_for
from app.iot.alarms import notify, service
from app.iot.alarms.evaluate import AlarmConfig
from app.iot.alarms.models import Alarm
from app.iot.models import Device, Probe

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
CONFIG = AlarmConfig()


class Receiver:
    """A local HTTP server that records what Apprise's ``json://`` posts to it."""

    def __init__(self, fail: int = 0) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(503)
                else:
                    outer.posts.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    # the tests' Apprise receiver listens on 127.0.0.1: allowed explicitly
    return settings_factory(database_url=database_url, egress={"allow": "127.0.0.1"})


def seed(settings: Settings, notify_urls: list[str] | None = None) -> None:
    with get_database(settings.sqlalchemy_url).session() as session:
        session.add(
            Device(
                id="pi1",
                name="Smoker",
                mqtt_username="pi1",
                notify_urls=notify_urls or [],
                created_at=T0,
            )
        )
        session.flush()
        session.add(
            Probe(device_id="pi1", probe_id="meat", name="Brisket", role="food", target_c=93.0)
        )
        session.add(
            Probe(
                device_id="pi1",
                probe_id="pit",
                name="Pit",
                role="pit",
                setpoint_c=110.0,
                pit_band_c=10.0,
                calibration_offset_c=-2.0,
            )
        )


def message(seq: int, meat: float | None, pit: float = 112.0, status: str = "ok") -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=seq)).isoformat()
    return {
        "device_id": "pi1",
        "seq": seq,
        "ts": ts,
        "received_at": ts,
        "probes": [
            {"id": "meat", "temp_c": meat, "status": status},
            {"id": "pit", "temp_c": pit, "status": "ok"},
        ],
    }


def telemetry(settings: Settings, *messages: dict[str, Any]) -> list[service.AlarmChange]:
    with get_database(settings.sqlalchemy_url).session() as session:
        return service.process_telemetry(session, list(messages), T0, CONFIG)


def alarms(settings: Settings) -> list[tuple[str, str | None, str]]:
    with get_database(settings.sqlalchemy_url).session() as session:
        rows = session.scalars(select(Alarm).order_by(Alarm.id))
        return [(a.kind, a.probe_id, a.state) for a in rows]


def restart(settings: Settings) -> None:
    """Drop every pooled connection: the next session starts from the database alone."""
    database = _databases.pop(settings.sqlalchemy_url, None)
    if database is not None:
        database.dispose()


def test_target_opens_once_clears_with_hysteresis_and_survives_restart(
    settings: Settings,
) -> None:
    seed(settings)
    changes = telemetry(settings, message(1, 90.0), message(2, 93.1), message(3, 93.6))
    assert [(c.action, c.message["kind"]) for c in changes] == [("open", "target_reached")]
    assert changes[0].message["value"] == 93.1
    assert changes[0].message["threshold"] == 93.0
    assert changes[0].notify is False  # the device has no notify URLs
    restart(settings)
    assert telemetry(settings, message(4, 92.2), message(5, 93.4)) == []  # within hysteresis
    restart(settings)
    [cleared] = telemetry(settings, message(6, 91.9))
    assert (cleared.action, cleared.message["state"]) == ("clear", "cleared")
    assert alarms(settings) == [("target_reached", "meat", "cleared")]
    telemetry(settings, message(7, 94.0))
    assert alarms(settings)[-1] == ("target_reached", "meat", "open")  # a new alarm


def test_a_redelivered_batch_changes_nothing(settings: Settings) -> None:
    seed(settings)
    batch = [message(1, 95.0, pit=112.0), message(2, 95.0, pit=125.0)]
    first = telemetry(settings, *batch)
    assert sorted(c.message["kind"] for c in first) == ["pit_range", "target_reached"]
    assert telemetry(settings, *batch) == []
    assert telemetry(settings, batch[1]) == []
    assert len(alarms(settings)) == 2


def test_calibration_is_applied_before_judging(settings: Settings) -> None:
    seed(settings)  # the pit probe reads 2 °C high: offset -2
    telemetry(settings, message(1, 20.0, pit=112.0))  # 110: settles, arms
    assert telemetry(settings, message(2, 20.0, pit=121.5)) == []  # 119.5: inside
    [opened] = telemetry(settings, message(3, 20.0, pit=122.5))  # 120.5: out
    assert opened.message["value"] == 120.5


def test_probe_unplugged_and_unknown_probes(settings: Settings) -> None:
    seed(settings)
    [opened] = telemetry(settings, message(1, None, status="open"))
    assert opened.message["kind"] == "probe_open"
    assert opened.message["message"] == ("Brisket: probe open")
    assert telemetry(settings, message(2, 50.0)) == []  # reading again: wait 10 s
    [cleared] = telemetry(settings, message(12, 50.0))
    assert cleared.action == "clear"
    odd = message(13, 50.0)
    odd["probes"].append({"id": "p9", "temp_c": None, "status": "short"})
    [new] = telemetry(settings, odd)  # not created by enrich-and-store yet: judged anyway
    assert (new.message["probe_id"], new.message["kind"]) == ("p9", "probe_open")


def test_one_open_alarm_per_device_probe_and_kind(settings: Settings) -> None:
    seed(settings)
    telemetry(settings, message(1, 95.0))

    def duplicate(probe_id: str | None, kind: str) -> None:
        with get_database(settings.sqlalchemy_url).session() as session:
            session.add(
                Alarm(
                    device_id="pi1",
                    probe_id=probe_id,
                    kind=kind,
                    state="open",
                    message="dup",
                    opened_at=T0,
                )
            )

    with pytest.raises(IntegrityError):
        duplicate("meat", "target_reached")
    duplicate(None, "device_offline")
    with pytest.raises(IntegrityError):  # device-level alarms too (no probe)
        duplicate(None, "device_offline")
    duplicate("meat", "high")  # another kind is fine


def test_device_offline_by_silence_and_by_availability(settings: Settings) -> None:
    seed(settings)
    telemetry(settings, message(1, 50.0))
    with get_database(settings.sqlalchemy_url).session() as session:
        device = session.get(Device, "pi1")
        assert device is not None
        device.last_seen_at = T0 + timedelta(seconds=1)  # what ingest records

    def sweep(at: float) -> list[service.AlarmChange]:
        with get_database(settings.sqlalchemy_url).session() as session:
            return service.sweep_offline(session, T0 + timedelta(seconds=at), CONFIG)

    with get_database(settings.sqlalchemy_url).session() as session:  # put away long ago
        session.add(
            Device(id="old", name="Old", mqtt_username="old", created_at=T0, last_seen_at=T0)
        )
    assert sweep(100) == []
    [opened] = sweep(122)  # not the device the evaluator never judged
    assert opened.message["kind"] == "device_offline"
    assert opened.message["message"] == "Smoker no data for 121 s"
    assert sweep(200) == []  # once
    [cleared] = telemetry(settings, message(300, 50.0))
    assert cleared.action == "clear"

    def status(value: str, at: float) -> list[service.AlarmChange]:
        with get_database(settings.sqlalchemy_url).session() as session:
            when = T0 + timedelta(seconds=at)
            return service.process_status(session, "pi1", value, when, when, CONFIG)

    [lwt] = status("offline", 301)
    assert lwt.message["message"] == "Smoker went offline"
    assert status("offline", 302) == []
    [back] = status("online", 303)
    assert back.action == "clear"
    with pytest.raises(ValueError, match="online or offline"):
        status("sleepy", 304)
    kinds = [a for a in alarms(settings) if a[0] == "device_offline"]
    assert kinds == [("device_offline", None, "cleared")] * 2


def test_notifications_reach_an_http_receiver_through_apprise(
    settings: Settings, receiver: Receiver
) -> None:
    seed(settings, notify_urls=[receiver.url])
    [opened] = telemetry(settings, message(1, 93.5))
    assert opened.notify

    def send(alarm_id: int, action: str, at: datetime = T0) -> str:
        with get_database(settings.sqlalchemy_url).session() as session:
            alarm = session.get(Alarm, alarm_id)
            device = session.get(Device, "pi1")
            assert alarm is not None
            assert device is not None
            return notify.notify_alarm(alarm, device, action, at, policy_for(settings))

    assert send(opened.alarm_id, "open") == "sent"
    assert send(opened.alarm_id, "open") == "already"  # a redelivered task sends nothing
    [post] = receiver.posts
    assert post["title"] == "Smoker: Target reached"
    assert post["message"] == "Brisket reached its target 93.0 °C: 93.5 °C"

    [cleared] = telemetry(settings, message(2, 90.0))
    assert cleared.notify
    assert send(cleared.alarm_id, "clear") == "sent"
    assert receiver.posts[-1]["title"] == "Smoker: Target reached (cleared)"
    assert len(receiver.posts) == 2  # one per transition, not per reading
    with get_database(settings.sqlalchemy_url).session() as session:
        alarm = session.get(Alarm, opened.alarm_id)
        assert alarm is not None
        history = alarm.notifications or []
    # the alarm's history: each transition's outcome and where it went, as Apprise shows it
    assert [(n["action"], n["outcome"]) for n in history] == [("open", "sent"), ("clear", "sent")]
    assert all(n["targets"] and n["targets"][0].startswith("json://127.0.0.1") for n in history)


def test_acknowledged_and_silenced_alarms_stay_quiet(
    settings: Settings, receiver: Receiver
) -> None:
    seed(settings, notify_urls=[receiver.url])
    [target] = telemetry(settings, message(1, 95.0, pit=112.0))
    [pit] = telemetry(settings, message(2, 95.0, pit=130.0))
    with get_database(settings.sqlalchemy_url).session() as session:
        service.acknowledge(session, target.alarm_id, T0)
        service.silence(session, pit.alarm_id, 30, T0)
        with pytest.raises(ValueError, match="minutes must be between"):
            service.silence(session, pit.alarm_id, -5, T0)
        with pytest.raises(service.AlarmNotFound):
            service.acknowledge(session, 424242, T0)
        target_row = session.get(Alarm, target.alarm_id)
        pit_row = session.get(Alarm, pit.alarm_id)
        device = session.get(Device, "pi1")
        assert target_row is not None
        assert pit_row is not None
        assert device is not None
        assert target_row.state == "acknowledged"
        assert notify.notify_alarm(target_row, device, "open", T0, policy_for(settings)) == "quiet"
        assert notify.notify_alarm(pit_row, device, "open", T0, policy_for(settings)) == "quiet"
        # the silence ends: a later transition would notify again
        later = T0 + timedelta(minutes=31)
        assert notify.notify_alarm(pit_row, device, "clear", later, policy_for(settings)) == "sent"
    assert [p["title"] for p in receiver.posts] == ["Smoker: Pit out of range (cleared)"]
    # both conditions clear: no notification for the acknowledged one, none while silenced
    cleared = telemetry(settings, message(3, 50.0, pit=110.0))
    assert {c.message["kind"]: c.notify for c in cleared} == {
        "target_reached": False,
        "pit_range": False,
    }


def test_a_failing_notification_service_raises_for_a_retry(settings: Settings) -> None:
    failing = Receiver(fail=1)
    try:
        seed(settings, notify_urls=[failing.url])
        [opened] = telemetry(settings, message(1, 95.0))
        with get_database(settings.sqlalchemy_url).session() as session:
            alarm = session.get(Alarm, opened.alarm_id)
            device = session.get(Device, "pi1")
            assert alarm is not None
            assert device is not None
            with pytest.raises(notify.NotifyFailed):
                notify.notify_alarm(alarm, device, "open", T0, policy_for(settings))
            assert alarm.open_notified_at is None  # not marked: the retry sends it
            assert notify.notify_alarm(alarm, device, "open", T0, policy_for(settings)) == "sent"
        assert len(failing.posts) == 1
    finally:
        failing.close()


def test_notifications_lost_before_their_enqueue_are_found_again(
    settings: Settings, receiver: Receiver
) -> None:
    seed(settings, notify_urls=[receiver.url])
    [opened] = telemetry(settings, message(1, 95.0))  # committed; say the enqueue was lost
    [cleared] = telemetry(settings, message(2, 90.0))

    def unsent(after: float) -> list[tuple[int, str]]:
        with get_database(settings.sqlalchemy_url).session() as session:
            return service.unsent_notifications(session, T0 + timedelta(seconds=after))

    assert unsent(30) == []  # within the grace period the first enqueue may still arrive
    assert unsent(90) == [(opened.alarm_id, "open"), (cleared.alarm_id, "clear")]
    assert unsent(7 * 3600) == []  # past the horizon: given up
    with get_database(settings.sqlalchemy_url).session() as session:
        alarm = session.get(Alarm, opened.alarm_id)
        device = session.get(Device, "pi1")
        assert alarm is not None
        assert device is not None
        assert notify.notify_alarm(alarm, device, "open", T0, policy_for(settings)) == "sent"
        assert notify.notify_alarm(alarm, device, "clear", T0, policy_for(settings)) == "sent"
    assert unsent(90) == []
    with get_database(settings.sqlalchemy_url).session() as session:
        session.get(Device, "pi1").notify_urls = []  # type: ignore[union-attr]
    telemetry(settings, message(3, 95.0))
    assert unsent(90) == []  # nothing to send to


def test_alarm_transitions_are_events_rules_can_route(settings: Settings) -> None:
    """Opened and cleared alarms are on the bus (source smokehouse.iot, detail-type Alarm State
    Change), committed with the alarm rows, and a rule matching them gets a delivery. Before:
    only live updates and notifications; no rule could react to an alarm."""
    import app.iot.alarms.handlers  # noqa: F401  (registers the target's handler)
    from app.bus import service as bus
    from app.bus.models import Delivery, Event

    seed(settings)
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        bus.put_rule(
            session,
            name="alarm-opened",
            event_pattern={
                "source": ["smokehouse.iot"],
                "detail-type": ["Alarm State Change"],
                "detail": {"action": ["open"], "kind": ["target_reached"]},
            },
        )
        target = {"Id": "h", "Arn": "arn:smokehouse:handler:iot.alarms.status"}
        assert bus.put_targets(session, None, "alarm-opened", [target]) == []
    for seq, temp in ((1, 90.0), (2, 93.1), (3, 91.0)):  # opens at 93.1, clears at 91.0
        with database.session() as session:
            changes = service.process_telemetry(session, [message(seq, temp)], T0, CONFIG)
            service.announce_changes(session, settings, changes)
    with database.session() as session:
        events = session.scalars(
            select(Event).where(Event.source == "smokehouse.iot").order_by(Event.received_at)
        ).all()
        assert [(e.detail_type, e.envelope["detail"]["action"]) for e in events] == [
            ("Alarm State Change", "open"),
            ("Alarm State Change", "clear"),
        ]
        opened = events[0].envelope
        assert opened["detail"]["kind"] == "target_reached"
        assert opened["detail"]["device_id"] == "pi1"
        assert opened["resources"] == ["arn:smokehouse:iot:device/pi1"]
        routed = session.scalars(select(Delivery).where(Delivery.rule_name == "alarm-opened"))
        assert [d.event_id for d in routed] == [events[0].id]
