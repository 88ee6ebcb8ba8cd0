from __future__ import annotations

import pytest

from smokehouse_device.agent import Clock
from smokehouse_device.readings import Status
from smokehouse_device.simulator import CookPlan, CookSimulator, SimulatedProbe

HOUR = 3600.0
SEEDS = [1, 7, 2024]


def series(
    sim: CookSimulator, probe: str, step_s: float = 60.0, hours: float = 16.0
) -> list[tuple[float, float]]:
    return [
        (t, sim.temperature(probe, t))
        for t in (i * step_s for i in range(int(hours * HOUR / step_s)))
    ]


def test_deterministic_for_a_seed() -> None:
    a, b = CookSimulator(seed=5), CookSimulator(seed=5)
    times = [0, 1, 59.5, 3600, 7200.25, 36000]
    for probe in ("pit", "meat1", "meat2"):
        assert [a.reading(probe, t) for t in times] == [b.reading(probe, t) for t in times]
    # Sampling pattern doesn't matter: b jumps straight to the end, then looks back.
    assert b.temperature("meat1", 40000) == a.temperature("meat1", 40000)
    assert b.temperature("pit", 100) == a.temperature("pit", 100)
    assert CookSimulator(seed=6).temperature("pit", 3600) != a.temperature("pit", 3600)


@pytest.mark.parametrize("seed", SEEDS)
def test_pit_holds_setpoint(seed: int) -> None:
    sim = CookSimulator(seed=seed)
    temps = [temp for t, temp in series(sim, "pit") if t > 1 * HOUR and sim._lid_open_at(t) is None]
    near = [abs(temp - 110.0) < 8 for temp in temps]
    assert sum(near) / len(near) > 0.9  # holds within ±8 °C outside lid-open recoveries
    assert sum(temps) / len(temps) == pytest.approx(110, abs=2.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_stall_plateau(seed: int) -> None:
    sim = CookSimulator(seed=seed)
    meat = series(sim, "meat1", step_s=300)
    # Longest stretch inside 63-77 °C rising by less than 6 °C: at least 2 hours.
    best = 0.0
    for i, (t0, v0) in enumerate(meat):
        if not 63 <= v0 <= 77:
            continue
        for t1, v1 in meat[i + 1 :]:
            if not 63 <= v1 <= 77 or v1 - v0 > 6:
                break
            best = max(best, t1 - t0)
    assert best >= 2 * HOUR
    # Before the stall the meat climbs far faster than during it.
    rate_before = sim.temperature("meat1", 2.5 * HOUR) - sim.temperature("meat1", 1.5 * HOUR)
    assert rate_before > 6  # °C per hour
    # And it finishes: past the stall it reaches a done temperature.
    assert max(v for _, v in meat) > 93
    assert meat[-1][1] > 90


@pytest.mark.parametrize("seed", SEEDS)
def test_lid_open_dips_and_recovers(seed: int) -> None:
    sim = CookSimulator(seed=seed)
    assert len(sim.lid_opens) >= 4
    for lid in sim.lid_opens:
        if lid.start_s < HOUR:
            continue
        before = sim.temperature("pit", lid.start_s - 2)
        low = min(
            sim.temperature("pit", lid.start_s + k * 2) for k in range(int(lid.duration_s / 2) + 30)
        )
        drop = before - low
        assert 15 <= drop <= 45, (lid, before, low)
        after = [sim.temperature("pit", lid.end_s + m * 60) for m in range(10, 25)]
        assert any(abs(v - 110) < 5 for v in after), (lid, after)


@pytest.mark.parametrize("seed", SEEDS)
def test_probe_unplugged_for_a_while(seed: int) -> None:
    sim = CookSimulator(seed=seed)
    assert sim.unplugged is not None
    start, end = sim.unplugged
    assert 10 * 60 <= end - start <= 25 * 60
    during = sim.reading("meat2", (start + end) / 2)
    assert during.status is Status.OPEN
    assert during.temp_c is None
    assert sim.reading("meat2", end + 1).status is Status.OK
    assert sim.reading("meat1", (start + end) / 2).status is Status.OK
    statuses = [sim.reading("meat2", t).status for t in range(0, int(16 * HOUR), 30)]
    assert Status.OPEN in statuses
    assert statuses.count(Status.OPEN) * 30 == pytest.approx(end - start, abs=60)


def test_no_unplug_when_disabled() -> None:
    sim = CookSimulator(CookPlan(unplug_probe=None), seed=1)
    assert sim.unplugged is None
    assert all(sim.reading("meat2", t).status is Status.OK for t in range(0, 30000, 600))


def test_custom_setpoint() -> None:
    sim = CookSimulator(CookPlan(setpoint_c=135), seed=3)
    assert sim.temperature("pit", 2 * HOUR) == pytest.approx(135, abs=10)


def test_unknown_probe() -> None:
    with pytest.raises(KeyError):
        CookSimulator(seed=1).temperature("nope", 0)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_scale_clock_drives_simulated_probes() -> None:
    mono = FakeMonotonic()
    clock = Clock(scale=600.0, monotonic=mono)
    sim = CookSimulator(seed=1)
    probe = SimulatedProbe(sim, "meat1", clock.elapsed)
    start = probe.read().temp_c
    mono.now += 30  # 30 real seconds = 5 cook hours
    assert clock.elapsed() == 5 * HOUR
    assert probe.read().temp_c == pytest.approx(sim.temperature("meat1", 5 * HOUR))
    assert start is not None
    assert (clock.now() - clock._start_wall).total_seconds() == 5 * HOUR
