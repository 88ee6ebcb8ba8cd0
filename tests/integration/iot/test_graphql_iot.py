"""The thermometer over GraphQL, on SQLite and PostgreSQL: what the dashboard reads (devices with
their probes, cook and open alarms; readings downsampled to at most N points; alarms; dead
letters), what only admin keys may change, and bad input refused without changing anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from app.config import Settings
from app.db import get_database
from app.iot import readings
from app.iot.alarms.models import Alarm
from app.iot.models import Cook, Device, IngestDeadLetter, Probe
from tests.integration.graphql_client import data, error
from tests.keys import VIEWER_SECRET

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
HOUR = 3600


def seed(settings: Settings) -> int:
    """A device with a pit and a food probe, an hour of 1 Hz readings in a cook (the food probe
    climbing 1 °C a minute), an open and a cleared alarm, a dead letter. Returns the cook id."""
    with get_database(settings.sqlalchemy_url).session() as session:
        session.add(Device(id="pi1", name="Smoker", mqtt_username="pi1", created_at=T0))
        session.add(Device(id="pi2", name="Grill", mqtt_username="pi2", created_at=T0))
        session.flush()
        session.add_all(
            [
                Probe(
                    device_id="pi1",
                    probe_id="p0",
                    name="Pit",
                    role="pit",
                    setpoint_c=110.0,
                    pit_band_c=10.0,
                    last_temp_c=111.0,
                    last_status="ok",
                    last_ts=T0 + timedelta(seconds=HOUR - 1),
                ),
                Probe(
                    device_id="pi1",
                    probe_id="p1",
                    name="Brisket",
                    role="food",
                    target_c=93.0,
                    last_temp_c=63.0,
                    last_status="ok",
                    last_rate_c_per_min=0.5,
                    last_ts=T0 + timedelta(seconds=HOUR - 1),
                ),
            ]
        )
        cook = Cook(device_id="pi1", started_at=T0, last_reading_at=T0 + timedelta(hours=1))
        session.add(cook)
        session.flush()
        rows = [
            {
                "device_id": "pi1",
                "probe_id": probe,
                "seq": i,
                "ts": T0 + timedelta(seconds=i),
                "received_at": T0 + timedelta(seconds=i),
                "cook_id": cook.id,
                "temp_c": (110.0 + (i % 7) - 3) if probe == "p0" else 3.0 + i / 60,
                "raw_temp_c": None,
                "status": "ok",
                "rate_c_per_min": None,
            }
            for i in range(HOUR)
            for probe in ("p0", "p1")
        ]
        readings.store(session, rows)  # keeps the 10 s rollup too
        session.add_all(
            [
                Alarm(
                    device_id="pi1",
                    probe_id="p0",
                    kind="pit_range",
                    state="open",
                    message="Pit at 125.0 °C, outside 100.0 to 120.0 °C",
                    value=125.0,
                    threshold=120.0,
                    opened_at=T0 + timedelta(minutes=10),
                ),
                Alarm(
                    device_id="pi1",
                    probe_id="p1",
                    kind="stall",
                    state="open",
                    message="Brisket stalled at 70.0 °C",
                    value=70.0,
                    opened_at=T0 + timedelta(minutes=20),
                ),
                Alarm(
                    device_id="pi1",
                    probe_id=None,
                    kind="device_offline",
                    state="cleared",
                    message="Smoker offline",
                    opened_at=T0,
                    cleared_at=T0 + timedelta(minutes=1),
                ),
            ]
        )
        session.add(
            IngestDeadLetter(
                received_at=T0,
                topic="smokehouse/pi9/telemetry",
                device_id="pi9",
                kind="unknown_device",
                reason="no device pi9",
                payload="{}",
            )
        )
        return cook.id


def test_devices_with_probes_cook_and_open_alarms(settings: Settings, client: TestClient) -> None:
    cook_id = seed(settings)
    devices = data(
        client,
        """{ devices { id name availability lastSeenAt
              probes { deviceId probeId name role calibrationOffsetC targetC setpointC pitBandC
                       lastTempC lastStatus lastRateCPerMin lastTs etaSeconds stalled }
              currentCook { id deviceId startedAt endedAt }
              openAlarms { kind probeId state value threshold message } } }""",
    )["devices"]
    assert [d["id"] for d in devices] == ["pi2", "pi1"]  # by name: Grill, Smoker
    grill, smoker = devices
    assert (grill["probes"], grill["currentCook"], grill["openAlarms"]) == ([], None, [])
    pit, food = smoker["probes"]
    assert (pit["role"], pit["setpointC"], pit["pitBandC"], pit["stalled"]) == (
        "pit",
        110.0,
        10.0,
        False,
    )
    assert pit["etaSeconds"] is None  # no target
    assert food["stalled"] is True  # an open stall alarm
    assert food["etaSeconds"] == pytest.approx((93.0 - 63.0) / 0.5 * 60)
    assert smoker["currentCook"]["id"] == cook_id
    assert [a["kind"] for a in smoker["openAlarms"]] == ["stall", "pit_range"]  # newest first

    one = data(client, '{ device(id: "pi1") { name } nope: device(id: "x") { name } }')
    assert one == {"device": {"name": "Smoker"}, "nope": None}


def test_readings_are_downsampled_in_sql(settings: Settings, client: TestClient) -> None:
    seed(settings)
    query = """query($d: ID!, $s: DateTime!, $e: DateTime!, $n: Int!, $p: [String!]) {
        readings(deviceId: $d, start: $s, end: $e, maxPoints: $n, probeIds: $p) {
          probeId points { ts tempC minC maxC } } }"""
    end = (T0 + timedelta(hours=1)).isoformat()
    series = data(client, query, d="pi1", s=T0.isoformat(), e=end, n=100)["readings"]
    assert [s["probeId"] for s in series] == ["p0", "p1"]
    for one in series:
        points = one["points"]
        assert len(points) == 90  # 36 s rounded up to 40 s buckets (the rollup's 10 s grid)
        assert all(p["minC"] <= p["tempC"] <= p["maxC"] for p in points)
        assert datetime.fromisoformat(points[0]["ts"]) == T0
        stamps = [datetime.fromisoformat(p["ts"]) for p in points]
        assert stamps == sorted(stamps)
    pit, food = series
    assert pit["points"][5]["minC"] == 107.0
    assert pit["points"][5]["maxC"] == 113.0
    assert food["points"][0]["tempC"] == pytest.approx(3.0 + 19.5 / 60)  # mean of 0..39 s
    assert food["points"][-1]["maxC"] == pytest.approx(3.0 + 3599 / 60)

    # fewer readings than maxPoints: one point per reading; a probe filter; a window
    window_end = (T0 + timedelta(seconds=10)).isoformat()
    [only] = data(client, query, d="pi1", s=T0.isoformat(), e=window_end, n=1000, p=["p1"])[
        "readings"
    ]
    assert only["probeId"] == "p1"
    assert len(only["points"]) == 10
    assert data(client, query, d="nope", s=T0.isoformat(), e=end, n=10)["readings"] == []

    assert "end must be after start" in error(client, query, d="pi1", s=end, e=end, n=10)
    naive = "2026-11-26T08:00:00"
    assert "time zone" in error(client, query, d="pi1", s=naive, e=end, n=10)
    assert "maxPoints" in error(client, query, d="pi1", s=T0.isoformat(), e=end, n=0)


def test_cooks_alarms_and_dead_letters(settings: Settings, client: TestClient) -> None:
    cook_id = seed(settings)
    found = data(
        client,
        """query($id: Int!) { cooks(deviceId: "pi1") { id }
             cook(id: $id) {
               deviceId lastReadingAt readings(maxPoints: 12) { probeId points { tempC } } }
             open: alarms(state: "open") { kind }
             all: alarms(deviceId: "pi1", limit: 2) { kind }
             iotDeadLetters { topic deviceId kind reason payload } }""",
        id=cook_id,
    )
    assert found["cooks"] == [{"id": cook_id}]
    assert [len(s["points"]) for s in found["cook"]["readings"]] == [12, 12]
    assert sorted(a["kind"] for a in found["open"]) == ["pit_range", "stall"]
    assert len(found["all"]) == 2
    assert found["iotDeadLetters"][0]["kind"] == "unknown_device"
    assert "state must be one of" in error(client, '{ alarms(state: "loud") { id } }')


PROBE = """mutation($i: ProbeSettingsInput!) {
    updateProbe(deviceId: "pi1", probeId: "p1", input: $i) { name role targetC highC lowC } }"""


def probe_row(settings: Settings) -> Probe:
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.scalar(select(Probe).where(Probe.probe_id == "p1"))
        assert row is not None
        session.expunge(row)
        return row


def test_update_probe_validates_and_needs_an_admin_key(
    settings: Settings, client: TestClient
) -> None:
    seed(settings)
    updated = data(client, PROBE, i={"name": " Butt ", "highC": 99.0, "targetC": None})
    assert updated["updateProbe"] == {
        "name": "Butt",
        "role": "food",
        "targetC": None,
        "highC": 99.0,
        "lowC": None,
    }
    for bad, reason in [
        ({"role": "lid"}, "role must be one of"),
        ({"name": ""}, "name must be"),
        ({"lowC": 120.0}, "lowC must be below highC"),
        ({"pitBandC": -1.0}, "pitBandC"),
        ({"targetC": 5000.0}, "between -100 and 1000"),
    ]:
        assert reason in error(client, PROBE, i=bad)
    assert "read-only" in error(client, PROBE, key=VIEWER_SECRET, i={"name": "x"})
    row = probe_row(settings)
    assert (row.name, row.high_c, row.low_c, row.role) == ("Butt", 99.0, None, "food")
    missing = 'mutation { updateProbe(deviceId: "pi1", probeId: "zz", input: {}) { name } }'
    assert "no probe" in error(client, missing)


def test_acknowledge_silence_and_cooks(settings: Settings, client: TestClient) -> None:
    seed(settings)
    [alarm] = data(client, '{ alarms(state: "open", limit: 1) { id } }')["alarms"]
    ack = "mutation($id: Int!) { acknowledgeAlarm(id: $id) { state acknowledgedAt } }"
    assert "read-only" in error(client, ack, key=VIEWER_SECRET, id=alarm["id"])
    acked = data(client, ack, id=alarm["id"])["acknowledgeAlarm"]
    assert acked["state"] == "acknowledged"
    assert acked["acknowledgedAt"]
    again = data(client, ack, id=alarm["id"])["acknowledgeAlarm"]
    assert again == acked  # idempotent
    silence = (
        "mutation($id: Int!, $m: Int!) { silenceAlarm(id: $id, minutes: $m) { silencedUntil } }"
    )
    until = data(client, silence, id=alarm["id"], m=30)["silenceAlarm"]["silencedUntil"]
    assert datetime.fromisoformat(until) > datetime.now(UTC) + timedelta(minutes=29)
    assert "minutes must be between" in error(client, silence, id=alarm["id"], m=-1)
    assert "no alarm" in error(client, ack, id=999999)

    start = 'mutation { startCook(deviceId: "pi1", name: "Brisket") { id name endedAt } }'
    started = data(client, start)["startCook"]
    assert (started["name"], started["endedAt"]) == ("Brisket", None)
    current = data(client, '{ device(id: "pi1") { currentCook { id } } cooks { id endedAt } }')
    assert current["device"]["currentCook"]["id"] == started["id"]
    assert sum(c["endedAt"] is None for c in current["cooks"]) == 1  # the old one ended
    ended = data(client, 'mutation { endCook(deviceId: "pi1") { id endedAt } }')["endCook"]
    assert ended["id"] == started["id"]
    assert ended["endedAt"]
    assert data(client, 'mutation { endCook(deviceId: "pi1") { id } }')["endCook"] is None
    assert "no device" in error(client, 'mutation { startCook(deviceId: "zz") { id } }')


def test_devices_cost_the_same_statements_for_2_or_12_devices(
    settings: Settings, client: TestClient
) -> None:
    def add_devices(first: int, last: int) -> None:
        with get_database(settings.sqlalchemy_url).session() as session:
            for i in range(first, last):
                session.add(
                    Device(id=f"d{i:02}", name=f"d{i:02}", mqtt_username=f"d{i:02}", created_at=T0)
                )
                session.flush()
                session.add(Probe(device_id=f"d{i:02}", probe_id="p", name="P"))
                session.add(Cook(device_id=f"d{i:02}", started_at=T0, last_reading_at=T0))
                session.add(
                    Alarm(
                        device_id=f"d{i:02}",
                        probe_id="p",
                        kind="stall",
                        state="open",
                        message="m",
                        opened_at=T0,
                    )
                )

    statements: list[str] = []
    engine = get_database(settings.sqlalchemy_url).engine

    def count(*args: Any) -> None:
        statements.append(args[2])

    def statements_for_query() -> int:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            devices = data(
                client,
                "{ devices { id probes { stalled } currentCook { id } openAlarms { kind } } }",
            )["devices"]
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert all(d["probes"][0]["stalled"] and d["currentCook"] for d in devices)
        return len(statements)

    add_devices(0, 2)
    with_2 = statements_for_query()
    add_devices(2, 12)
    assert statements_for_query() == with_2
