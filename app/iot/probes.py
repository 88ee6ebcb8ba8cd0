"""Probe settings: the name, role, calibration, target and thresholds a user gives a probe; the
alarm evaluation judges the next reading against them. A bad value changes nothing.

Services: the caller's transaction, no commit. Messages name fields as the API does
(``lowC``), since they are shown to whoever sent the value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.iot.alarms.models import Alarm
from app.iot.models import PROBE_ROLES, Probe

#: The columns a user may set; anything else is refused rather than written.
SETTINGS: Final = frozenset(
    {
        "name",
        "role",
        "target_c",
        "high_c",
        "low_c",
        "setpoint_c",
        "pit_band_c",
        "calibration_offset_c",
    }
)
MIN_C: Final = -100.0
MAX_C: Final = 1000.0
MAX_CALIBRATION_C: Final = 20.0
MAX_PIT_BAND_C: Final = 200.0


class ProbeSettingsError(ValueError):
    """A setting the probe cannot take; nothing was changed."""


class UnknownProbe(LookupError):
    """The device has no such probe."""


def check_settings(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The given settings, validated and normalised (name stripped, a cleared calibration is
    0); raises :class:`ProbeSettingsError` at the first bad one."""
    unknown = sorted(set(changes) - SETTINGS)
    if unknown:
        raise ProbeSettingsError(f"not a probe setting: {', '.join(unknown)}")
    given = dict(changes)
    for key, value in given.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if not math.isfinite(value):
            raise ProbeSettingsError(f"{key} must be a finite number")
        if not MIN_C <= value <= MAX_C and key != "pit_band_c":
            raise ProbeSettingsError(f"{key} must be between -100 and 1000 °C")
    if "name" in given:
        name = (given["name"] or "").strip()
        if not 1 <= len(name) <= 200:
            raise ProbeSettingsError("name must be 1 to 200 characters")
        given["name"] = name
    if "role" in given and given["role"] not in PROBE_ROLES:
        raise ProbeSettingsError(f"role must be one of {', '.join(PROBE_ROLES)}")
    if given.get("calibration_offset_c", 0.0) is None:
        given["calibration_offset_c"] = 0.0
    if abs(given.get("calibration_offset_c") or 0.0) > MAX_CALIBRATION_C:
        raise ProbeSettingsError("calibrationOffsetC must be within ±20 °C")
    band = given.get("pit_band_c")
    if band is not None and not 0.0 < band <= MAX_PIT_BAND_C:
        raise ProbeSettingsError("pitBandC must be above 0 and at most 200 °C")
    return given


def update_settings(
    session: Session, device_id: str, probe_id: str, changes: Mapping[str, Any]
) -> Probe:
    """Apply ``changes`` (only the settings given; ``None`` clears a threshold) to one probe.
    Raises :class:`ProbeSettingsError` or :class:`UnknownProbe`; the caller's rollback then
    leaves the probe as it was."""
    given = check_settings(changes)
    row = session.scalar(
        select(Probe).where(Probe.device_id == device_id, Probe.probe_id == probe_id)
    )
    if row is None:
        raise UnknownProbe(f"device {device_id} has no probe {probe_id!r}")
    for key, value in given.items():
        setattr(row, key, value)
    if row.low_c is not None and row.high_c is not None and row.low_c >= row.high_c:
        raise ProbeSettingsError("lowC must be below highC")
    session.flush()
    return row


def stalled(session: Session, device_ids: Iterable[str]) -> set[tuple[str, str]]:
    """(device id, probe id) of every probe of these devices with a stall alarm not cleared,
    in one statement."""
    rows = session.execute(
        select(Alarm.device_id, Alarm.probe_id).where(
            Alarm.device_id.in_(list(device_ids)),
            Alarm.kind == "stall",
            Alarm.cleared_at.is_(None),
        )
    )
    return {(device_id, probe_id) for device_id, probe_id in rows if probe_id is not None}
