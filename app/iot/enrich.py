"""Enrich and store a Telemetry Batch: the work behind the ``iot-enrich-and-store`` workflow.

Per device, in one transaction (the device row is locked first, so two workers never interleave
one device's cook or rate bookkeeping):

* probes are created on first sight — role ``pit`` when the probe id says "pit", ``ambient``
  when it says "amb"/"ambient", otherwise ``food``; named "Pit", "Ambient" or "Probe N";
* the probe's calibration offset is added (``raw_temp_c`` keeps what the device sent);
* rate of change in °C/min, exponentially smoothed over ``SMOKEHOUSE_IOT_RATE_WINDOW_SECONDS``
  (a 1 s difference of a noisy probe is meaningless); reset after a gap or a non-ok reading;
* cook sessions (:mod:`app.iot.cooks`);
* one batched insert (:mod:`app.iot.readings`), a no-op for rows already stored;
* the probes' ``last_*`` from the newest reading (an older, replayed reading never overwrites).

Idempotent: a redelivered batch inserts nothing and leaves the probes as they were (its readings
are not newer than what the probes hold). The live updates (one per message, calibrated) are
returned for the caller to publish after commit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.iot import cooks, readings
from app.iot.ingest.telemetry import TelemetryPayload, Timestamp, format_ts
from app.iot.models import Device, Probe
from app.iot.settings import IotSettings

log = logging.getLogger("smokehouse.iot.enrich")

#: Beyond this gap between two readings the rate starts over.
RATE_MAX_GAP = timedelta(minutes=10)


class InvalidTelemetry(ValueError):
    """The workflow's input is not a Telemetry Batch (not retried)."""


class StoredMessage(TelemetryPayload):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    received_at: Timestamp


class BatchInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messages: list[dict[str, Any]]


# --- pure parts -------------------------------------------------------------------------------


def default_role(probe_id: str) -> str:
    lowered = probe_id.lower()
    if "pit" in lowered:
        return "pit"
    if re.search(r"amb", lowered):
        return "ambient"
    return "food"


def default_name(role: str, taken: Iterable[str]) -> str:
    """ "Pit"/"Ambient" for those roles, else the first free "Probe N"."""
    names = set(taken)
    if role in ("pit", "ambient"):
        base = role.capitalize()
        if base not in names:
            return base
    n = 1
    while f"Probe {n}" in names:
        n += 1
    return f"Probe {n}"


def next_rate(
    previous_ts: datetime | None,
    previous_temp: float | None,
    previous_rate: float | None,
    ts: datetime,
    temp: float | None,
    window_seconds: float,
) -> float | None:
    """°C/min at ``ts``: the instantaneous slope, exponentially smoothed with time constant
    ``window_seconds``. None when there is nothing to compare with."""
    if temp is None or previous_temp is None or previous_ts is None:
        return None
    dt = (ts - previous_ts).total_seconds()
    if dt <= 0 or dt > RATE_MAX_GAP.total_seconds():
        return None
    instant = (temp - previous_temp) / dt * 60.0
    if previous_rate is None:
        return instant
    alpha = 1.0 - math.exp(-dt / window_seconds)
    return previous_rate + alpha * (instant - previous_rate)


# --- the service ------------------------------------------------------------------------------


#: The live channel of device arrivals and new probes (``deviceChanges`` in GraphQL).
DEVICE_CHANGES: Final = "devices"


@dataclass
class StoreResult:
    messages: int = 0
    rows: int = 0
    skipped: int = 0
    live: list[dict[str, Any]] = field(default_factory=list)  # realtime ``readings:`` messages
    new_probes: dict[str, list[str]] = field(default_factory=dict)

    def device_changes(self) -> list[tuple[str, dict[str, Any]]]:
        """Live messages for :data:`DEVICE_CHANGES`: a device's first probes (the device has
        just started reporting) or a probe plugged in mid-cook."""
        return [
            (DEVICE_CHANGES, {"device_id": device_id, "probe_ids": probe_ids})
            for device_id, probe_ids in sorted(self.new_probes.items())
        ]


def parse_messages(payload: Any) -> tuple[list[StoredMessage], int]:
    """The workflow input's messages; malformed ones are skipped (and counted), a payload with
    no messages list is :class:`InvalidTelemetry`."""
    try:
        batch = BatchInput.model_validate(payload)
    except ValidationError as exc:
        raise InvalidTelemetry(
            f"expected {{'messages': [...]}}: {exc.errors()[0]['msg']}"
        ) from None
    parsed: list[StoredMessage] = []
    skipped = 0
    for raw in batch.messages:
        try:
            parsed.append(StoredMessage.model_validate(raw))
        except ValidationError as exc:
            skipped += 1
            log.warning("skipped a malformed telemetry message: %s", exc.errors()[0]["msg"])
    return parsed, skipped


_ADVISORY_LOCKS = text(
    "SELECT pg_advisory_xact_lock(k) FROM "
    "(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS ordered"
)


def device_lock_key(device_id: str) -> int:
    """The PostgreSQL advisory lock that stands for one device's bookkeeping (64-bit)."""
    digest = hashlib.blake2b(f"smokehouse.iot.device:{device_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _lock_devices(session: Session, device_ids: Sequence[str]) -> set[str]:
    """Serialise the devices' cook and rate bookkeeping between workers until the commit;
    returns the ids that exist.

    PostgreSQL: transaction-scoped advisory locks, taken in key order (no deadlock), not row
    locks on ``iot_devices``: ingest stamps ``last_seen_at`` on those rows in every batch, and
    made to wait behind a worker's whole enrich transaction, its tail latency tripled. SQLite:
    the database write lock, taken by a no-op write before any read."""
    if session.get_bind().dialect.name == "postgresql":
        present = set(session.scalars(select(Device.id).where(Device.id.in_(device_ids))))
        keys = sorted({device_lock_key(d) for d in present})
        if keys:
            session.execute(_ADVISORY_LOCKS, {"keys": keys})
        return present
    session.execute(
        update(Device)
        .where(Device.id.in_(device_ids))
        .values(last_seq=Device.last_seq)
        .execution_options(synchronize_session=False)
    )
    return set(session.scalars(select(Device.id).where(Device.id.in_(device_ids))))


def _load_probes(session: Session, device_ids: Sequence[str]) -> dict[str, dict[str, Probe]]:
    found: dict[str, dict[str, Probe]] = defaultdict(dict)
    for probe in session.scalars(select(Probe).where(Probe.device_id.in_(device_ids))):
        found[probe.device_id][probe.probe_id] = probe
    return found


def _create_probes(
    session: Session, wanted: dict[str, list[str]], existing: dict[str, dict[str, Probe]]
) -> dict[str, list[str]]:
    """Create the probes seen for the first time (default name and role); returns them."""
    created: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    for device_id, probe_ids in wanted.items():
        names = [p.name for p in existing.get(device_id, {}).values()]
        for probe_id in probe_ids:
            if probe_id in existing.get(device_id, {}):
                continue
            role = default_role(probe_id)
            name = default_name(role, names)
            names.append(name)
            created.setdefault(device_id, []).append(probe_id)
            rows.append(
                {
                    "device_id": device_id,
                    "probe_id": probe_id,
                    "name": name,
                    "role": role,
                    "calibration_offset_c": 0.0,
                }
            )
    if rows:
        session.execute(
            dialect_insert(session)(Probe)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["device_id", "probe_id"])
        )
    return created


def store_batch(
    session: Session, iot: IotSettings, messages: Sequence[StoredMessage]
) -> StoreResult:
    """Enrich and store ``messages`` in the caller's transaction (see the module docstring)."""
    result = StoreResult(messages=len(messages))
    by_device: dict[str, list[StoredMessage]] = defaultdict(list)
    for message in messages:
        by_device[message.device_id].append(message)
    idle = timedelta(seconds=iot.cook_idle_seconds)
    rows: list[dict[str, Any]] = []
    present = _lock_devices(session, sorted(by_device))
    for device_id in sorted(set(by_device) - present):
        log.warning("readings for unknown device %s dropped (deleted?)", device_id)
        result.skipped += len(by_device.pop(device_id))
    device_ids = sorted(by_device)
    all_probes = _load_probes(session, device_ids)
    wanted = {
        d: list(dict.fromkeys(p.id for m in by_device[d] for p in m.probes)) for d in device_ids
    }
    result.new_probes = _create_probes(session, wanted, all_probes)
    if result.new_probes:
        all_probes = _load_probes(session, device_ids)
    current = cooks.open_cooks(session, device_ids)
    for device_id in device_ids:
        batch = sorted(by_device[device_id], key=lambda m: (m.ts, m.seq))
        probes = all_probes[device_id]
        cook_ids = cooks.track(
            session, device_id, [m.ts for m in batch], idle, current.get(device_id)
        )
        # Per-probe state: (ts, temp, rate) of the newest reading seen so far.
        state = {
            pid: (p.last_ts, p.last_temp_c, p.last_rate_c_per_min) for pid, p in probes.items()
        }
        for message, cook_id in zip(batch, cook_ids, strict=True):
            live_probes = []
            for reading in message.probes:
                probe = probes[reading.id]
                temp = (
                    None
                    if reading.temp_c is None
                    else round(reading.temp_c + probe.calibration_offset_c, 3)
                )
                last_ts, last_temp, last_rate = state[reading.id]
                newer = last_ts is None or message.ts > last_ts
                rate = (
                    next_rate(
                        last_ts, last_temp, last_rate, message.ts, temp, iot.rate_window_seconds
                    )
                    if newer
                    else None
                )
                if rate is not None:
                    rate = round(rate, 4)
                if newer:
                    state[reading.id] = (message.ts, temp, rate)
                    probe.last_ts = message.ts
                    probe.last_temp_c = temp
                    probe.last_status = reading.status
                    probe.last_rate_c_per_min = rate
                rows.append(
                    {
                        "device_id": device_id,
                        "probe_id": reading.id,
                        "seq": message.seq,
                        "ts": message.ts,
                        "received_at": message.received_at,
                        "cook_id": cook_id,
                        "temp_c": temp,
                        "raw_temp_c": reading.temp_c,
                        "status": reading.status,
                        "rate_c_per_min": rate,
                    }
                )
                live_probes.append(
                    {
                        "probe_id": reading.id,
                        "temp_c": temp,
                        "status": reading.status,
                        "rate_c_per_min": rate,
                    }
                )
            result.live.append(
                {
                    "device_id": device_id,
                    "seq": message.seq,
                    "ts": format_ts(message.ts),
                    "cook_id": cook_id,
                    "probes": live_probes,
                }
            )
    readings.store(session, rows)
    result.rows = len(rows)
    session.flush()
    return result
