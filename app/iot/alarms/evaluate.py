"""The alarm evaluator: probe settings + what it remembered + new readings → what it remembers
now + which alarms open or clear. Pure: no database, no network, no clock it is not given.

What users of FireBoard, ThermoWorks and HeaterMeter expect, and how it is met:

* **One alarm per condition, not one per reading.** A condition *opens* an alarm once; it
  stays active (the state remembers it) until the condition is over, then *clears* once.
* **Hysteresis.** An alarm clears only when the value is back past its threshold by
  ``hysteresis_c`` (default 1 °C): a probe hovering at 93.0 ± 0.3 °C does not flap.
* **Arming.** ``low`` and ``pit_range`` are armed only once the temperature has been inside
  the range (well clear of the edge): a pit warming up from cold does not scream at the
  start of every cook. Changing the setpoint/band or the low threshold re-arms.
* **Probe open** (status ``open``/``short``/``error``, or no temperature) opens ``probe_open``
  at once; it clears after the probe has read fine for ``probe_ok_seconds`` (a loose plug that
  flickers stays one alarm). Temperature alarms keep their state while the probe says nothing.
* **Stall** (food probes): the temperature stayed inside the stall band (65 to 77 °C) for
  ``stall_minutes`` with a rate of change (least-squares slope) within ±``stall_rate``. It
  clears when the meat climbs past the plateau's top by the hysteresis (or falls out of the
  band); a new stall then needs a whole new flat window.
* **Device offline**: the availability topic says ``offline`` (LWT), or no data for
  ``offline_seconds``; any data or ``online`` clears it.
* **Redelivery.** Readings at or before the last one evaluated are ignored: evaluating the same
  batch twice changes nothing (the bus delivers at least once).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

TARGET = "target_reached"
HIGH = "high"
LOW = "low"
PIT_RANGE = "pit_range"
PROBE_OPEN = "probe_open"
DEVICE_OFFLINE = "device_offline"
STALL = "stall"

Action = Literal["open", "clear"]


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    hysteresis_c: float = 1.0
    offline_seconds: float = 120.0
    stall_min_c: float = 65.0
    stall_max_c: float = 77.0
    stall_minutes: float = 30.0
    stall_rate_c_per_min: float = 0.1
    #: Stall samples are kept this far apart (bounded state whatever the reading rate).
    sample_seconds: float = 30.0
    #: A probe must read fine this long before ``probe_open`` clears (a loose plug flickers).
    probe_ok_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    probe_id: str
    name: str
    role: str = "food"
    target_c: float | None = None
    high_c: float | None = None
    low_c: float | None = None
    setpoint_c: float | None = None
    pit_band_c: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    ts: datetime
    temp_c: float | None  # calibrated
    status: str = "ok"


@dataclass(frozen=True, slots=True)
class Transition:
    kind: str
    action: Action
    at: datetime
    probe_id: str | None
    message: str
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeState:
    last_ts: datetime | None = None
    active: frozenset[str] = frozenset()
    #: Armed alarms and the thresholds they were armed for (a change re-arms).
    armed: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    #: (epoch seconds, °C), at least ``sample_seconds`` apart, the last ``stall_minutes``.
    samples: tuple[tuple[float, float], ...] = ()
    stall_peak_c: float | None = None
    #: Since when the probe reads fine (``probe_open`` clears after ``probe_ok_seconds``).
    ok_since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "ok_since": self.ok_since.isoformat() if self.ok_since else None,
            "active": sorted(self.active),
            "armed": {k: list(v) for k, v in sorted(self.armed.items())},
            "samples": [list(s) for s in self.samples],
            "stall_peak_c": self.stall_peak_c,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ProbeState:
        """What :meth:`to_json` wrote; anything unreadable starts afresh."""
        if not data:
            return cls()
        try:
            return cls(
                last_ts=datetime.fromisoformat(data["last_ts"]) if data.get("last_ts") else None,
                active=frozenset(str(k) for k in data.get("active", ())),
                armed={str(k): tuple(float(x) for x in v) for k, v in data["armed"].items()},
                samples=tuple((float(e), float(t)) for e, t in data.get("samples", ())),
                stall_peak_c=data.get("stall_peak_c"),
                ok_since=_time(data.get("ok_since")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls()


@dataclass(frozen=True, slots=True)
class DeviceState:
    last_seen: datetime | None = None
    availability: str | None = None
    availability_at: datetime | None = None
    active: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "availability": self.availability,
            "availability_at": self.availability_at.isoformat() if self.availability_at else None,
            "active": sorted(self.active),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DeviceState:
        if not data:
            return cls()
        try:
            return cls(
                last_seen=_time(data.get("last_seen")),
                availability=data.get("availability"),
                availability_at=_time(data.get("availability_at")),
                active=frozenset(str(k) for k in data.get("active", ())),
            )
        except (TypeError, ValueError, AttributeError):
            return cls()


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _fmt(value: float) -> str:
    return f"{value:.1f} °C"


# --- probes -------------------------------------------------------------------------------


class _Step:
    """Evaluation of one reading: collects transitions and the next state's parts."""

    def __init__(self, probe: ProbeSettings, state: ProbeState, at: datetime) -> None:
        self.probe = probe
        self.at = at
        self.active = set(state.active)
        self.armed = dict(state.armed)
        self.transitions: list[Transition] = []

    def open(self, kind: str, message: str, value: float | None, threshold: float | None) -> None:
        if kind not in self.active:
            self.active.add(kind)
            self.transitions.append(
                Transition(kind, "open", self.at, self.probe.probe_id, message, value, threshold)
            )

    def clear(self, kind: str, message: str, value: float | None, threshold: float | None) -> None:
        if kind in self.active:
            self.active.discard(kind)
            self.transitions.append(
                Transition(kind, "clear", self.at, self.probe.probe_id, message, value, threshold)
            )

    def threshold(
        self,
        kind: str,
        limit: float | None,
        above: bool,
        t: float,
        hysteresis: float,
        opened: str,
        cleared: str,
    ) -> None:
        """An alarm on one side of ``limit``: opens at it, clears past it by ``hysteresis``."""
        if limit is None:
            self.clear(kind, f"{self.probe.name}: {kind} alarm removed", t, None)
            return
        reached = t >= limit if above else t <= limit
        back = t < limit - hysteresis if above else t > limit + hysteresis
        if kind in self.active:
            if back:
                self.clear(kind, cleared, t, limit)
        elif reached:
            self.open(kind, opened, t, limit)


def _slope_per_min(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope in °C per minute (0 for fewer than two samples)."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_e = sum(e for e, _ in samples) / n
    mean_t = sum(t for _, t in samples) / n
    var = sum((e - mean_e) ** 2 for e, _ in samples)
    if var == 0:
        return 0.0
    return sum((e - mean_e) * (t - mean_t) for e, t in samples) / var * 60.0


def _step(
    probe: ProbeSettings, state: ProbeState, reading: Reading, config: AlarmConfig
) -> tuple[ProbeState, list[Transition]]:
    step = _Step(probe, state, reading.ts)
    name, h = probe.name, config.hysteresis_c
    t = reading.temp_c
    if reading.status != "ok" or t is None or not math.isfinite(t):
        status = reading.status if reading.status != "ok" else "no reading"
        step.open(PROBE_OPEN, f"{name}: probe {status}", None, None)
        quiet = replace(state, last_ts=reading.ts, active=frozenset(step.active), ok_since=None)
        return quiet, step.transitions
    ok_since = state.ok_since or reading.ts
    if (reading.ts - ok_since).total_seconds() >= config.probe_ok_seconds:
        step.clear(PROBE_OPEN, f"{name}: probe reading again ({_fmt(t)})", t, None)

    step.threshold(
        TARGET,
        probe.target_c,
        True,
        t,
        h,
        f"{name} reached its target {_fmt(probe.target_c or 0)}: {_fmt(t)}",
        f"{name} back below its target: {_fmt(t)}",
    )
    step.threshold(
        HIGH,
        probe.high_c,
        True,
        t,
        h,
        f"{name} too hot: {_fmt(t)} (high {_fmt(probe.high_c or 0)})",
        f"{name} back below its high alarm: {_fmt(t)}",
    )
    _low(step, probe, t, h)
    _pit_range(step, probe, t, h)
    samples, peak = _stall(step, probe, state, reading.ts, t, config)
    next_state = ProbeState(
        last_ts=reading.ts,
        active=frozenset(step.active),
        armed=step.armed,
        samples=samples,
        stall_peak_c=peak,
        ok_since=ok_since,
    )
    return next_state, step.transitions


def _low(step: _Step, probe: ProbeSettings, t: float, h: float) -> None:
    low, name = probe.low_c, probe.name
    if low is None or step.armed.get(LOW) != (low,):
        step.armed.pop(LOW, None)
        step.clear(LOW, f"{name}: low alarm removed", t, low)
        if low is None:
            return
    if LOW not in step.armed:
        if t >= low + h:
            step.armed[LOW] = (low,)
        return
    if LOW in step.active:
        if t >= low + h:
            step.clear(LOW, f"{name} back above its low alarm: {_fmt(t)}", t, low)
    elif t <= low:
        step.open(LOW, f"{name} too cold: {_fmt(t)} (low {_fmt(low)})", t, low)


def _pit_range(step: _Step, probe: ProbeSettings, t: float, h: float) -> None:
    sp, band, name = probe.setpoint_c, probe.pit_band_c, probe.name
    if probe.role != "pit" or sp is None or band is None or band <= 0:
        step.armed.pop(PIT_RANGE, None)
        step.clear(PIT_RANGE, f"{name}: pit range alarm removed", t, None)
        return
    if step.armed.get(PIT_RANGE) != (sp, band):  # new setpoint or band: arm again
        step.armed.pop(PIT_RANGE, None)
        step.clear(PIT_RANGE, f"{name}: pit range changed", t, None)
    off = abs(t - sp)
    settled = off <= band - min(h, band / 2)
    if PIT_RANGE not in step.armed:
        if settled:
            step.armed[PIT_RANGE] = (sp, band)
        return
    edge = sp + band if t > sp else sp - band
    if PIT_RANGE in step.active:
        if settled:
            step.clear(PIT_RANGE, f"{name} back in range: {_fmt(t)}", t, edge)
    elif off > band:
        step.open(
            PIT_RANGE,
            f"{name} out of range: {_fmt(t)} (setpoint {_fmt(sp)} ± {band:.1f} °C)",
            t,
            edge,
        )


def _stall(
    step: _Step,
    probe: ProbeSettings,
    state: ProbeState,
    ts: datetime,
    t: float,
    config: AlarmConfig,
) -> tuple[tuple[tuple[float, float], ...], float | None]:
    name = probe.name
    if probe.role != "food":
        step.clear(STALL, f"{name}: no longer a food probe", t, None)
        return (), None
    epoch = ts.timestamp()
    window = config.stall_minutes * 60.0
    samples = list(state.samples)
    if not samples or epoch - samples[-1][0] >= config.sample_seconds:
        samples.append((epoch, t))
    samples = [s for s in samples if s[0] >= epoch - window - config.sample_seconds / 2]
    peak = state.stall_peak_c
    if STALL in step.active:
        top = peak if peak is not None else config.stall_max_c
        if t >= top + config.hysteresis_c or t < config.stall_min_c - config.hysteresis_c:
            step.clear(STALL, f"{name} is moving again: {_fmt(t)}", t, top)
            return ((epoch, t),), None  # a new stall needs a whole new flat window
        return tuple(samples), peak
    covered = epoch - samples[0][0] >= window - config.sample_seconds / 2
    in_band = all(config.stall_min_c <= s <= config.stall_max_c for _, s in samples)
    target_reached = probe.target_c is not None and t >= probe.target_c
    if covered and in_band and not target_reached and len(samples) >= 3:
        rate = _slope_per_min(samples)
        if abs(rate) <= config.stall_rate_c_per_min:
            peak = max(s for _, s in samples)
            step.open(
                STALL,
                f"{name} stalled at {_fmt(t)} for {config.stall_minutes:.0f} min "
                f"({rate:+.2f} °C/min)",
                t,
                config.stall_rate_c_per_min,
            )
    return tuple(samples), peak


def evaluate_probe(
    probe: ProbeSettings,
    state: ProbeState,
    readings: Iterable[Reading],
    config: AlarmConfig = AlarmConfig(),
) -> tuple[ProbeState, list[Transition]]:
    """Judge new readings (in time order; those at or before ``state.last_ts`` are ignored)."""
    transitions: list[Transition] = []
    for reading in sorted(readings, key=lambda r: r.ts):
        if state.last_ts is not None and reading.ts <= state.last_ts:
            continue
        state, found = _step(probe, state, reading, config)
        transitions.extend(found)
    return state, transitions


# --- devices ------------------------------------------------------------------------------


def evaluate_device(
    state: DeviceState,
    now: datetime,
    *,
    device_name: str,
    seen_at: datetime | None = None,
    status: str | None = None,
    status_at: datetime | None = None,
    config: AlarmConfig = AlarmConfig(),
) -> tuple[DeviceState, list[Transition]]:
    """Data seen at ``seen_at``, an availability ``status`` received at ``status_at``, or just
    the clock (``now``): is the device offline?"""
    last_seen, availability, availability_at = (
        state.last_seen,
        state.availability,
        state.availability_at,
    )
    newer = status_at is not None and (availability_at is None or status_at >= availability_at)
    if status in ("online", "offline") and status_at is not None and newer:
        availability, availability_at = status, status_at
        if status == "online":
            last_seen = max(last_seen or status_at, status_at)
    if seen_at is not None:
        last_seen = max(last_seen or seen_at, seen_at)
        if availability == "offline" and (availability_at is None or seen_at >= availability_at):
            availability, availability_at = "online", seen_at  # data is proof of life
    silent = (now - last_seen).total_seconds() if last_seen is not None else None
    timed_out = silent is not None and silent > config.offline_seconds
    offline = availability == "offline" or timed_out
    active = set(state.active)
    transitions: list[Transition] = []
    if offline and DEVICE_OFFLINE not in active:
        active.add(DEVICE_OFFLINE)
        why = "went offline" if availability == "offline" else f"no data for {silent:.0f} s"
        transitions.append(
            Transition(
                DEVICE_OFFLINE,
                "open",
                now,
                None,
                f"{device_name} {why}",
                silent,
                config.offline_seconds,
            )
        )
    elif not offline and DEVICE_OFFLINE in active:
        active.discard(DEVICE_OFFLINE)
        transitions.append(
            Transition(
                DEVICE_OFFLINE, "clear", now, None, f"{device_name} is back online", silent, None
            )
        )
    next_state = DeviceState(last_seen, availability, availability_at, frozenset(active))
    return next_state, transitions


# --- estimates ----------------------------------------------------------------------------


def eta_seconds(
    temp_c: float | None, target_c: float | None, rate_c_per_min: float | None
) -> float | None:
    """Seconds to target at the current rate: 0 once reached, ``None`` when not rising."""
    if temp_c is None or target_c is None:
        return None
    if temp_c >= target_c:
        return 0.0
    if rate_c_per_min is None or not math.isfinite(rate_c_per_min) or rate_c_per_min <= 0.01:
        return None
    return (target_c - temp_c) / rate_c_per_min * 60.0
