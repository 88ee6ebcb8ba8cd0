"""Probe settings as a service (app/iot/probes.py): what GraphQL's ``updateProbe`` and any other
caller get — validation before anything is written, an update that a bad combination rolls back,
and the one "stalled" query the probe loader and the mutation share."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.db import get_database
from app.iot import cooks, probes
from app.iot.alarms.models import Alarm
from app.iot.models import Cook, Probe
from tests.integration.iot.conftest import add_device

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def add_probe(database_url: str, device_id: str, probe_id: str, **fields: Any) -> None:
    with get_database(database_url).session() as session:
        session.add(Probe(device_id=device_id, probe_id=probe_id, name=probe_id, **fields))


def stored(database_url: str, device_id: str = "pi1", probe_id: str = "p1") -> Probe:
    with get_database(database_url).session() as session:
        row = session.scalar(
            select(Probe).where(Probe.device_id == device_id, Probe.probe_id == probe_id)
        )
        assert row is not None
        session.expunge(row)
        return row


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"role": "lid"}, "role must be one of pit, food, ambient"),
        ({"name": "   "}, "name must be 1 to 200 characters"),
        ({"name": None}, "name must be 1 to 200 characters"),
        ({"name": "x" * 201}, "name must be 1 to 200 characters"),
        ({"target_c": 5000.0}, "target_c must be between -100 and 1000 °C"),
        ({"low_c": -101.0}, "low_c must be between -100 and 1000 °C"),
        ({"high_c": math.inf}, "high_c must be a finite number"),
        ({"setpoint_c": math.nan}, "setpoint_c must be a finite number"),
        ({"calibration_offset_c": 20.5}, "calibrationOffsetC must be within ±20 °C"),
        ({"pit_band_c": 0.0}, "pitBandC must be above 0 and at most 200 °C"),
        ({"pit_band_c": 250.0}, "pitBandC must be above 0 and at most 200 °C"),
        ({"device_id": "pi2"}, "not a probe setting: device_id"),
    ],
)
def test_check_settings_refuses_bad_values(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(probes.ProbeSettingsError, match="^" + re.escape(reason)):
        probes.check_settings(changes)


def test_check_settings_normalises() -> None:
    assert probes.check_settings({"name": "  Butt ", "calibration_offset_c": None}) == {
        "name": "Butt",
        "calibration_offset_c": 0.0,
    }
    assert probes.check_settings({"pit_band_c": 10, "target_c": None, "low_c": -100}) == {
        "pit_band_c": 10,
        "target_c": None,
        "low_c": -100,
    }
    assert probes.check_settings({}) == {}


def test_update_settings_writes_only_what_is_given(database_url: str) -> None:
    add_device(database_url, "pi1")
    add_probe(database_url, "pi1", "p1", role="food", target_c=93.0, high_c=120.0)
    with get_database(database_url).session() as session:
        row = probes.update_settings(
            session, "pi1", "p1", {"name": " Butt ", "low_c": 50.0, "target_c": None}
        )
        assert (row.name, row.low_c, row.target_c, row.high_c) == ("Butt", 50.0, None, 120.0)
    row = stored(database_url)
    assert (row.name, row.role, row.target_c, row.high_c, row.low_c) == (
        "Butt",
        "food",
        None,
        120.0,
        50.0,
    )


def test_a_refused_update_changes_nothing(database_url: str) -> None:
    add_device(database_url, "pi1")
    add_probe(database_url, "pi1", "p1", high_c=100.0)
    # Each value is fine alone; together low is not below high, found after they were applied.
    database = get_database(database_url)
    refused = pytest.raises(probes.ProbeSettingsError, match="lowC must be below highC")
    with refused, database.session() as session:
        probes.update_settings(session, "pi1", "p1", {"name": "New", "low_c": 100.0})
    refused = pytest.raises(probes.ProbeSettingsError, match="role must be one of")
    with refused, database.session() as session:
        probes.update_settings(session, "pi1", "p1", {"name": "New", "role": "lid"})
    row = stored(database_url)
    assert (row.name, row.low_c, row.high_c, row.role) == ("p1", None, 100.0, "food")


def test_update_settings_of_an_unknown_probe(database_url: str) -> None:
    add_device(database_url, "pi1")
    with get_database(database_url).session() as session:
        with pytest.raises(probes.UnknownProbe, match="device pi1 has no probe 'zz'"):
            probes.update_settings(session, "pi1", "zz", {})
        with pytest.raises(LookupError):  # GraphQL reports it like any lookup failure
            probes.update_settings(session, "pi9", "p1", {"name": "x"})


def test_stalled_is_open_stall_alarms_of_the_devices_asked(database_url: str) -> None:
    for device in ("pi1", "pi2"):
        add_device(database_url, device)
        for probe in ("p1", "p2"):
            add_probe(database_url, device, probe)

    def alarm(device: str, probe: str | None, kind: str = "stall", cleared: bool = False) -> Alarm:
        return Alarm(
            device_id=device,
            probe_id=probe,
            kind=kind,
            message=f"{kind} {device}/{probe}",
            opened_at=T0,
            cleared_at=T0 if cleared else None,
            state="cleared" if cleared else "open",
        )

    with get_database(database_url).session() as session:
        session.add_all(
            [
                alarm("pi1", "p1"),
                alarm("pi1", "p2", cleared=True),
                alarm("pi1", "p2", kind="high"),
                alarm("pi1", None, kind="device_offline"),
                alarm("pi2", "p2"),
            ]
        )
    with get_database(database_url).session() as session:
        assert probes.stalled(session, ["pi1", "pi2"]) == {("pi1", "p1"), ("pi2", "p2")}
        assert probes.stalled(session, ["pi1"]) == {("pi1", "p1")}
        assert probes.stalled(session, []) == set()


def test_start_cook_checks_before_it_ends_the_open_one(database_url: str) -> None:
    add_device(database_url, "pi1")
    with get_database(database_url).session() as session:
        first = cooks.start_cook(session, "pi1", T0, name="Brisket").id
    with get_database(database_url).session() as session:
        with pytest.raises(ValueError, match="name must be at most 200 characters"):
            cooks.start_cook(session, "pi1", T0, name="x" * 201)
        with pytest.raises(LookupError, match="no device pi9"):
            cooks.start_cook(session, "pi9", T0)
    with get_database(database_url).session() as session:
        [cook] = session.scalars(select(Cook)).all()
        assert (cook.id, cook.ended_at) == (first, None)
