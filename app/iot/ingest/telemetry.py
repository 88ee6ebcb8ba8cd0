"""What an MQTT message is: telemetry, a status change, or a refusal with its kind and reason.

Pure: bytes, topic, limits and the clock in; a value out. The contract
(device/README.md, "Telemetry contract"):
topic ``smokehouse/<device_id>/telemetry``, JSON
``{"device_id", "seq", "ts" (RFC 3339), "probes": [{"id", "temp_c", "status"}]}``; a probe's
``temp_c`` is a number exactly when its ``status`` is ``ok``. Unknown fields are ignored (a newer
device may add some); everything else is checked strictly (no ``"12"`` for 12, no ``true`` for 1).

Refusal kinds, checked in this order: ``too_large``, ``not_json``, ``not_finite`` (NaN/Infinity),
``schema``, ``topic_mismatch`` (payload device ≠ topic device), ``impossible`` (temperature out of
bounds, timestamp in the future). ``unknown_device`` needs the database: see ``batch``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

TOPIC_ROOT = "smokehouse"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_PROBES = 32
MAX_SEQ = 2**63 - 1
REJECTION_KINDS = (
    "too_large",
    "not_json",
    "not_finite",
    "schema",
    "topic_mismatch",
    "impossible",
    "unknown_device",
)
Status = Literal["ok", "open", "short", "error"]


def _rfc3339(value: Any) -> Any:
    """An RFC 3339 string with a UTC offset → an aware UTC datetime (other values pass on and
    fail the strict datetime check)."""
    if not isinstance(value, str):
        return value
    if len(value) < 20 or value[10] not in "Tt ":
        raise ValueError("ts must be an RFC 3339 date-time such as 2026-05-01T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError("ts must be an RFC 3339 date-time such as 2026-05-01T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("ts needs a UTC offset (Z or +hh:mm)")
    return parsed.astimezone(UTC)


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


class ProbeReading(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    temp_c: float | None
    status: Status

    @model_validator(mode="after")
    def _temperature_iff_ok(self) -> ProbeReading:
        if self.status == "ok" and self.temp_c is None:
            raise ValueError(f"probe {self.id}: status ok needs a temp_c")
        if self.status != "ok" and self.temp_c is not None:
            raise ValueError(f"probe {self.id}: only status ok carries a temp_c")
        return self


class TelemetryPayload(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    device_id: str = Field(pattern=ID_PATTERN)
    seq: int = Field(ge=0, le=MAX_SEQ)
    ts: Timestamp
    probes: list[ProbeReading] = Field(min_length=1, max_length=MAX_PROBES)

    @model_validator(mode="after")
    def _unique_probes(self) -> TelemetryPayload:
        ids = [p.id for p in self.probes]
        if len(set(ids)) != len(ids):
            raise ValueError("probe ids must be unique within a message")
        return self


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 128 * 1024
    min_temp_c: float = -60.0
    max_temp_c: float = 1000.0
    max_future: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Telemetry:
    device_id: str
    payload: TelemetryPayload

    def detail(self, received_at: datetime) -> dict[str, Any]:
        """The message as it goes into a ``Telemetry Batch`` event."""
        return {
            "device_id": self.device_id,
            "seq": self.payload.seq,
            "ts": format_ts(self.payload.ts),
            "received_at": format_ts(received_at),
            "probes": [
                {"id": p.id, "temp_c": p.temp_c, "status": p.status} for p in self.payload.probes
            ],
        }


@dataclass(frozen=True, slots=True)
class StatusChange:
    device_id: str
    status: Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class Rejection:
    kind: str
    reason: str
    device_id: str | None


Classified = Telemetry | StatusChange | Rejection


def format_ts(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``smokehouse/<device_id>/<kind>`` → (device_id, kind), or None."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or parts[2] not in ("telemetry", "status"):
        return None
    if not _valid_id(parts[1]):
        return None
    return parts[1], parts[2]


def _valid_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None


class _NotFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _reject_constant(text: str) -> float:
    raise _NotFinite(text)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def classify(topic: str, payload: bytes, limits: Limits, now: datetime) -> Classified:
    """Decide what one MQTT message is. Never raises."""
    parsed_topic = parse_topic(topic)
    if parsed_topic is None:
        return Rejection("schema", f"topic {topic[:200]!r} is not smokehouse/<device_id>/…", None)
    device_id, kind = parsed_topic
    if len(payload) > limits.max_payload_bytes:
        return Rejection(
            "too_large",
            f"payload is {len(payload)} bytes; the limit is {limits.max_payload_bytes}",
            device_id,
        )
    if kind == "status":
        text = payload.decode("utf-8", "replace").strip()
        if text in ("online", "offline"):
            return StatusChange(device_id, text)  # type: ignore[arg-type]
        return Rejection("schema", "a status payload must be online or offline", device_id)
    return _telemetry(device_id, payload, limits, now)


def _telemetry(device_id: str, payload: bytes, limits: Limits, now: datetime) -> Classified:
    try:
        data = json.loads(
            payload.decode("utf-8"), parse_float=_finite_float, parse_constant=_reject_constant
        )
    except _NotFinite as exc:
        return Rejection("not_finite", f"temperatures must be finite numbers, not {exc}", device_id)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Rejection("not_json", f"payload is not JSON text: {exc}"[:300], device_id)
    if not isinstance(data, dict):
        return Rejection("schema", "payload must be a JSON object", device_id)
    try:
        message = TelemetryPayload.model_validate(data)
    except ValidationError as exc:
        return Rejection("schema", _describe(exc)[:1000], device_id)
    if message.device_id != device_id:
        return Rejection(
            "topic_mismatch",
            f"payload device_id {message.device_id!r} published on the topic of {device_id!r}",
            device_id,
        )
    for probe in message.probes:
        if probe.temp_c is not None and not (
            limits.min_temp_c <= probe.temp_c <= limits.max_temp_c
        ):
            return Rejection(
                "impossible",
                f"probe {probe.id}: {probe.temp_c} °C is outside "
                f"[{limits.min_temp_c:g}, {limits.max_temp_c:g}] °C",
                device_id,
            )
    if message.ts > now + limits.max_future:
        return Rejection(
            "impossible",
            f"ts {format_ts(message.ts)} is in the future (now {format_ts(now)})",
            device_id,
        )
    return Telemetry(device_id, message)
