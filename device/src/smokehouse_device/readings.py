"""The probe interface, readings and the telemetry payload (the device ↔ server contract).

Telemetry contract (see DESIGN.md): topic ``smokehouse/<device_id>/telemetry``, QoS 1, JSON
``{"device_id": str, "seq": int, "ts": RFC 3339 UTC with "Z",
"probes": [{"id": str, "temp_c": float | null, "status": "ok"|"open"|"short"|"error"}]}``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

TOPIC_ROOT = "smokehouse"


class Status(StrEnum):
    OK = "ok"
    OPEN = "open"
    SHORT = "short"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Reading:
    """One probe sample. ``temp_c`` is ``None`` unless ``status`` is ``ok``."""

    temp_c: float | None
    status: Status
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status is Status.OK:
            if self.temp_c is None or not math.isfinite(self.temp_c):
                raise ValueError("an ok reading needs a finite temperature")
        elif self.temp_c is not None:
            raise ValueError("only an ok reading carries a temperature")

    @classmethod
    def ok(cls, temp_c: float) -> Reading:
        return cls(temp_c, Status.OK)

    @classmethod
    def open(cls, detail: str = "") -> Reading:
        return cls(None, Status.OPEN, detail)

    @classmethod
    def short(cls, detail: str = "") -> Reading:
        return cls(None, Status.SHORT, detail)

    @classmethod
    def error(cls, detail: str = "") -> Reading:
        return cls(None, Status.ERROR, detail)


@runtime_checkable
class Probe(Protocol):
    """A temperature probe. ``read`` never raises for hardware trouble: it returns a status."""

    @property
    def id(self) -> str: ...

    def read(self) -> Reading: ...

    def close(self) -> None: ...


class CalibratedProbe:
    """Adds a per-probe calibration offset (°C) to ``ok`` readings and shields the sampler
    from driver exceptions (a driver bug becomes an ``error`` reading, not a dead loop)."""

    def __init__(self, inner: Probe, offset_c: float = 0.0) -> None:
        self._inner = inner
        self.offset_c = offset_c

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def inner(self) -> Probe:
        return self._inner

    def read(self) -> Reading:
        try:
            reading = self._inner.read()
        except Exception as exc:  # a driver must not take the sampling loop down
            log.exception("probe %s: driver raised", self.id)
            return Reading.error(f"driver raised {type(exc).__name__}: {exc}")
        if reading.status is Status.OK and reading.temp_c is not None and self.offset_c:
            return Reading.ok(reading.temp_c + self.offset_c)
        return reading

    def close(self) -> None:
        self._inner.close()


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix and millisecond precision."""
    if ts.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def telemetry_topic(device_id: str) -> str:
    return f"{TOPIC_ROOT}/{device_id}/telemetry"


def status_topic(device_id: str) -> str:
    return f"{TOPIC_ROOT}/{device_id}/status"


def probe_entries(readings: Sequence[tuple[str, Reading]]) -> list[dict[str, Any]]:
    return [
        {
            "id": probe_id,
            "temp_c": None if r.temp_c is None else round(r.temp_c, 2),
            "status": r.status.value,
        }
        for probe_id, r in readings
    ]


def build_payload(
    device_id: str, seq: int, ts: datetime, readings: Sequence[tuple[str, Reading]]
) -> dict[str, Any]:
    """The exact telemetry JSON object, key order as in the contract."""
    return {
        "device_id": device_id,
        "seq": seq,
        "ts": rfc3339(ts),
        "probes": probe_entries(readings),
    }


def encode_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)
