"""A simulated low-and-slow cook, for demos and tests without hardware.

A small physical model integrated with a fixed step, deterministic for a given seed:

* **Pit** — a first-order thermal mass heated by a PID controller (think HeaterMeter's blower)
  toward the setpoint, with slow fuel/wind disturbances, so it hunts a few degrees around it.
* **Lid opens** — every couple of hours (a spritz, a wrap, a peek) the lid is open for 45-120 s
  and the pit drops 20-40 °C, then the controller recovers it over several minutes.
* **Meat** — heats toward the pit temperature (Newtonian heating) minus evaporative cooling that
  switches on around 60 °C and lasts while surface moisture remains: the classic **stall**, a
  plateau in the 65-77 °C band for a few hours, after which the meat climbs to done (~95 °C).
* **Unplugged probe** — one meat probe is pulled out for 10-25 minutes mid-cook (``open``,
  ``temp_c`` null).

Readings add a little measurement noise. ``reading(probe, t)`` is a pure function of the seed and
``t`` (seconds since the start): the model is integrated lazily and deterministically up to ``t``.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from smokehouse_device.readings import Reading

STEP_S = 2.0


@dataclass(frozen=True, slots=True)
class MeatSpec:
    probe_id: str
    start_c: float = 4.0
    # Newtonian heating time constant (s): bigger cut, longer cook.
    tau_s: float = 4.2 * 3600
    # Evaporative cooling at full surface moisture (°C/s) and moisture budget.
    evap_c_per_s: float = 0.0036
    moisture: float = 1.0
    moisture_use: float = 0.026
    stall_onset_c: float = 62.0


@dataclass(frozen=True, slots=True)
class CookPlan:
    setpoint_c: float = 110.0
    ambient_c: float = 18.0
    pit_probe: str = "pit"
    meats: tuple[MeatSpec, ...] = (
        MeatSpec("meat1"),
        MeatSpec("meat2", tau_s=3.4 * 3600, evap_c_per_s=0.0033, moisture=0.8),
    )
    # Probe that gets unplugged for a while (None: never).
    unplug_probe: str | None = "meat2"
    duration_s: float = 16 * 3600
    lid_open_every_s: tuple[float, float] = (1.5 * 3600, 2.5 * 3600)
    lid_open_drop_c: tuple[float, float] = (20.0, 40.0)
    lid_open_duration_s: tuple[float, float] = (45.0, 120.0)

    @property
    def probe_ids(self) -> tuple[str, ...]:
        return (self.pit_probe, *(m.probe_id for m in self.meats))


@dataclass(frozen=True, slots=True)
class LidOpen:
    start_s: float
    duration_s: float
    drop_c: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(slots=True)
class _State:
    t: float
    pit: float
    integral: float
    disturbance: float
    fire: float
    meat: list[float]
    moisture: list[float]
    output: float = 0.0
    prev_pit: float = 0.0
    lid_tau: float = 0.0
    noisy: dict[str, float] = field(default_factory=dict)


class CookSimulator:
    def __init__(self, plan: CookPlan | None = None, *, seed: int = 0) -> None:
        self.plan = plan or CookPlan()
        self.seed = seed
        self._rng = random.Random(seed)
        schedule_rng = random.Random(f"{seed}/schedule")
        self.lid_opens = self._schedule_lid_opens(schedule_rng)
        self.unplugged: tuple[float, float] | None = None
        if self.plan.unplug_probe is not None:
            start = schedule_rng.uniform(2.5 * 3600, 5.0 * 3600)
            self.unplugged = (start, start + schedule_rng.uniform(600.0, 1500.0))
        p = self.plan
        self._state = _State(
            t=0.0,
            pit=p.ambient_c,
            prev_pit=p.ambient_c,
            integral=0.0,
            disturbance=0.0,
            fire=0.0,
            meat=[m.start_c for m in p.meats],
            moisture=[m.moisture for m in p.meats],
        )
        self._record_noisy()
        # Step history so readings at earlier times stay answerable (and identical).
        self._times: list[float] = [0.0]
        self._history: list[dict[str, float]] = [dict(self._state.noisy)]

    def _schedule_lid_opens(self, rng: random.Random) -> tuple[LidOpen, ...]:
        p = self.plan
        events: list[LidOpen] = []
        t = rng.uniform(*p.lid_open_every_s)
        while t < p.duration_s:
            events.append(
                LidOpen(t, rng.uniform(*p.lid_open_duration_s), rng.uniform(*p.lid_open_drop_c))
            )
            t += rng.uniform(*p.lid_open_every_s)
        return tuple(events)

    def _lid_open_at(self, t: float) -> LidOpen | None:
        for event in self.lid_opens:
            if event.start_s <= t < event.end_s:
                return event
        return None

    def _record_noisy(self) -> None:
        s, p, rng = self._state, self.plan, self._rng
        s.noisy[p.pit_probe] = s.pit + rng.gauss(0.0, 0.3)
        for spec, temp in zip(p.meats, s.meat, strict=True):
            s.noisy[spec.probe_id] = temp + rng.gauss(0.0, 0.08)

    def _step(self) -> None:
        s, p, dt = self._state, self.plan, STEP_S
        # Pit: PID controller on a first-order thermal mass (heating ~0.3 °C/s flat out).
        error = p.setpoint_c - s.pit
        lid = self._lid_open_at(s.t)
        if lid is not None:
            # Lid-open mode (as HeaterMeter does): hold the output, don't chase the drop.
            output = s.output
        else:
            # PID on the pit temperature (derivative on the measurement, not the error).
            raw = 0.04 * error + 0.00035 * s.integral - 2.0 * (s.pit - s.prev_pit) / dt
            output = min(max(raw, 0.0), 1.0)
            # Integrate only near the setpoint and while not saturated (anti-windup), so the
            # recovery after a lid opening doesn't overshoot much.
            if abs(error) < 8.0 and (raw == output or (raw > 1.0) != (error > 0)):
                s.integral = min(max(s.integral + error * dt, -400.0), 2500.0)
        s.output = output
        s.prev_pit = s.pit
        # Slow random disturbance (wind, fuel) as an Ornstein-Uhlenbeck process (°C/s).
        s.disturbance += -s.disturbance * dt / 900.0 + self._rng.gauss(0.0, 0.001) * math.sqrt(dt)
        losses = (s.pit - p.ambient_c) / 1500.0
        # The fire answers the blower with a lag, which makes the controller hunt a little.
        s.fire += (output - s.fire) * dt / 120.0
        d_pit = 0.3 * s.fire - losses + s.disturbance
        if lid is not None:
            # Open lid: the pit air dumps its heat; the decay constant is picked so the whole
            # opening drops the pit by the event's drop_c.
            if s.lid_tau == 0.0:
                excess = max(s.pit - p.ambient_c, lid.drop_c + 1.0)
                s.lid_tau = lid.duration_s / -math.log(1.0 - lid.drop_c / excess)
            d_pit = -(s.pit - p.ambient_c) / s.lid_tau
        else:
            s.lid_tau = 0.0
        s.pit += d_pit * dt
        # Meat: Newtonian heating minus evaporative cooling while moisture lasts.
        for i, spec in enumerate(p.meats):
            temp = s.meat[i]
            heating = (s.pit - temp) / spec.tau_s
            # The surface stays wet (full cooling) until the last quarter of the moisture.
            wet = min(1.0, 4.0 * s.moisture[i] / spec.moisture) if spec.moisture > 0 else 0.0
            onset = 1.0 / (1.0 + math.exp(-(temp - spec.stall_onset_c) / 1.5))
            evap = spec.evap_c_per_s * wet * onset
            # Evaporation can hold the meat almost still (it creeps ~1 °C/h) but not cool it.
            evap = min(evap, max(heating, 0.0) * 0.9)
            s.meat[i] = temp + (heating - evap) * dt
            s.moisture[i] = max(0.0, s.moisture[i] - spec.moisture_use * evap * dt)
        s.t += dt
        self._record_noisy()

    def advance_to(self, t: float) -> None:
        while self._state.t + STEP_S <= t:
            self._step()
            self._times.append(self._state.t)
            self._history.append(dict(self._state.noisy))

    def temperature(self, probe_id: str, t: float) -> float:
        """The noisy probe temperature at ``t`` (seconds since the start), ignoring unplugging."""
        if probe_id not in self.plan.probe_ids:
            raise KeyError(f"unknown simulated probe {probe_id!r}")
        t = max(0.0, t)
        self.advance_to(t)
        index = bisect_right(self._times, t) - 1
        return self._history[index][probe_id]

    def reading(self, probe_id: str, t: float) -> Reading:
        temp = self.temperature(probe_id, t)
        if (
            probe_id == self.plan.unplug_probe
            and self.unplugged is not None
            and self.unplugged[0] <= t < self.unplugged[1]
        ):
            return Reading.open("simulated: probe unplugged")
        return Reading.ok(temp)


class SimulatedProbe:
    """A probe backed by a :class:`CookSimulator`, read at ``clock()`` seconds of cook time."""

    def __init__(self, simulator: CookSimulator, probe_id: str, clock: Callable[[], float]) -> None:
        self._sim = simulator
        self._id = probe_id
        self._clock = clock

    @property
    def id(self) -> str:
        return self._id

    def read(self) -> Reading:
        return self._sim.reading(self._id, self._clock())

    def close(self) -> None:
        pass
