"""The alarm evaluator, exhaustively: each alarm kind opens once and clears once, hysteresis
stops flapping, arming spares a cold start, redelivery and restarts change nothing."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.iot.alarms.evaluate import (
    DEVICE_OFFLINE,
    HIGH,
    LOW,
    PIT_RANGE,
    PROBE_OPEN,
    STALL,
    TARGET,
    AlarmConfig,
    DeviceState,
    ProbeSettings,
    ProbeState,
    Reading,
    Transition,
    eta_seconds,
    evaluate_device,
    evaluate_probe,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
CONFIG = AlarmConfig()


def readings(temps: list[float | None], start: int = 0, step: float = 1.0) -> list[Reading]:
    return [
        Reading(T0 + timedelta(seconds=start + i * step), t, "ok" if t is not None else "open")
        for i, t in enumerate(temps)
    ]


def run(
    probe: ProbeSettings, temps: list[float | None], step: float = 1.0
) -> tuple[ProbeState, list[tuple[str, str]]]:
    state, found = evaluate_probe(probe, ProbeState(), readings(temps, step=step))
    return state, [(t.kind, t.action) for t in found]


FOOD = ProbeSettings("p1", "Brisket", "food", target_c=93.0)
PIT = ProbeSettings("p0", "Pit", "pit", setpoint_c=110.0, pit_band_c=10.0)


def test_target_reached_fires_once_and_clears_with_hysteresis() -> None:
    temps = [90.0, 92.9, 93.0, 93.5, 92.7, 93.2, 92.1, 93.4, 91.9, 93.0]
    state, found = run(FOOD, temps)
    # 92.7 and 92.1 are within the 1 °C hysteresis: no clear; 91.9 is past it
    assert found == [(TARGET, "open"), (TARGET, "clear"), (TARGET, "open")]
    assert state.active == {TARGET}


def test_target_transition_carries_value_threshold_and_message() -> None:
    _, found = evaluate_probe(FOOD, ProbeState(), readings([92.0, 93.4]))
    [opened] = found
    assert opened == Transition(
        TARGET,
        "open",
        T0 + timedelta(seconds=1),
        "p1",
        "Brisket reached its target 93.0 °C: 93.4 °C",
        93.4,
        93.0,
    )


def test_removing_a_threshold_clears_its_alarm() -> None:
    state, _ = evaluate_probe(FOOD, ProbeState(), readings([95.0]))
    assert state.active == {TARGET}
    cleared = ProbeSettings("p1", "Brisket", "food", target_c=None)
    state, found = evaluate_probe(cleared, state, readings([95.0], start=1))
    assert [(t.kind, t.action) for t in found] == [(TARGET, "clear")]


def test_high_alarm() -> None:
    probe = ProbeSettings("p0", "Pit", "pit", high_c=130.0)
    _, found = run(probe, [120.0, 130.0, 131.0, 129.5, 128.9, 131.0])
    assert found == [(HIGH, "open"), (HIGH, "clear"), (HIGH, "open")]


def test_low_alarm_is_armed_only_once_the_temperature_was_above_it() -> None:
    probe = ProbeSettings("p0", "Pit", "pit", low_c=100.0)
    # warming up from cold: no alarm; armed at 101; fires at 100; clears at 101 (hysteresis)
    _, found = run(probe, [20.0, 60.0, 100.5, 101.0, 100.5, 100.0, 99.0, 100.9, 101.0])
    assert found == [(LOW, "open"), (LOW, "clear")]


def test_changing_the_low_threshold_rearms_it() -> None:
    probe = ProbeSettings("p0", "Pit", "pit", low_c=100.0)
    state, _ = evaluate_probe(probe, ProbeState(), readings([105.0, 99.0]))
    assert state.active == {LOW}
    higher = ProbeSettings("p0", "Pit", "pit", low_c=120.0)
    state, found = evaluate_probe(higher, state, readings([99.0, 100.0], start=2))
    assert [(t.kind, t.action) for t in found] == [(LOW, "clear")]  # not armed for 120 yet


def test_pit_range_arms_when_settled_and_clears_inside_the_band() -> None:
    # 95 is outside 100..120 but the pit never settled: nothing; 115 settles it (arms)
    temps = [25.0, 95.0, 115.0, 121.0, 125.0, 119.5, 118.9, 99.0, 101.0]
    _, found = run(PIT, temps)
    assert found == [
        (PIT_RANGE, "open"),  # 121 > 120
        (PIT_RANGE, "clear"),  # 118.9 ≤ 120 - 1
        (PIT_RANGE, "open"),  # 99 < 100
        (PIT_RANGE, "clear"),  # 101 ≥ 100 + 1
    ]


def test_a_new_setpoint_rearms_the_pit_range() -> None:
    state, _ = evaluate_probe(PIT, ProbeState(), readings([110.0, 140.0]))
    assert state.active == {PIT_RANGE}
    raised = ProbeSettings("p0", "Pit", "pit", setpoint_c=135.0, pit_band_c=5.0)
    state, found = evaluate_probe(raised, state, readings([120.0, 125.0, 129.0, 128.0], start=2))
    assert [(t.kind, t.action) for t in found] == [(PIT_RANGE, "clear")]  # ramping: no alarm
    state, found = evaluate_probe(raised, state, readings([131.0, 128.0], start=6))
    assert [(t.kind, t.action) for t in found] == [(PIT_RANGE, "open")]


def test_pit_range_needs_a_pit_probe_with_setpoint_and_band() -> None:
    for probe in (
        ProbeSettings("p1", "Food", "food", setpoint_c=110.0, pit_band_c=10.0),
        ProbeSettings("p0", "Pit", "pit", setpoint_c=110.0),
    ):
        assert run(probe, [110.0, 150.0, 50.0])[1] == []


def test_probe_open_keeps_temperature_alarms_and_clears_when_reading_again() -> None:
    state, found = run(FOOD, [94.0, None, None, 94.0])
    assert found == [(TARGET, "open"), (PROBE_OPEN, "open")]
    # a loose plug flickers: one alarm, cleared once it has read fine for 10 s
    state, found = run(FOOD, [94.0, None, 94.0, None, 94.0, None, *[94.0] * 11])
    assert found == [(TARGET, "open"), (PROBE_OPEN, "open"), (PROBE_OPEN, "clear")]
    assert state.active == {TARGET}
    short = [Reading(T0, None, "short")]
    _, found2 = evaluate_probe(FOOD, ProbeState(), short)
    assert found2[0].message == "Brisket: probe short"


def cook(minutes_flat: float, rate_before: float = 0.5, rate_flat: float = 0.02) -> list[float]:
    """A food probe climbing to 64 °C, then in the stall band at 68 °C creeping at
    ``rate_flat`` °C/min for ``minutes_flat``, one reading per 10 s."""
    temps, t = [], 50.0
    while t < 64.0:
        temps.append(t)
        t += rate_before / 6
    t = 68.0
    for _ in range(int(minutes_flat * 6)):
        temps.append(t)
        t += rate_flat / 6
    return temps


def test_stall_is_detected_after_the_stall_window_then_clears_when_climbing() -> None:
    temps = cook(29)
    _, found = run(FOOD, temps, step=10)
    assert found == []  # 29 minutes flat: not yet
    temps = cook(31)
    state, found = run(FOOD, temps, step=10)
    assert found == [(STALL, "open")]
    peak = state.stall_peak_c
    assert peak is not None
    assert 68.0 <= peak <= 69.0
    more = [peak + 0.5, peak + 0.9, peak + 1.0, peak + 2.0]
    state, found2 = evaluate_probe(FOOD, state, readings(more, start=len(temps) * 10, step=10))
    assert [(t.kind, t.action) for t in found2] == [(STALL, "clear")]
    assert all(t >= peak + 1.0 for _, t in state.samples)  # a new stall needs a new window


def test_no_stall_when_rising_out_of_band_or_not_food() -> None:
    assert run(FOOD, cook(40, rate_flat=0.3), step=10)[1] == []  # 18 °C/h: still cooking
    assert run(FOOD, [50.0] * 400, step=10)[1] == []  # flat but below the stall band
    assert run(ProbeSettings("p0", "Pit", "pit"), cook(40), step=10)[1] == []
    reached = ProbeSettings("p1", "Brisket", "food", target_c=60.0)
    assert run(reached, cook(40), step=10)[1] == [(TARGET, "open")]  # done, not stalled


def test_stall_state_stays_small_at_one_hertz() -> None:
    state, _ = run(FOOD, cook(40 * 10) * 1, step=1)
    assert len(state.samples) <= CONFIG.stall_minutes * 60 / CONFIG.sample_seconds + 2


def test_redelivered_and_old_readings_change_nothing() -> None:
    batch = readings([90.0, 94.0, 95.0, 50.0])
    state, found = evaluate_probe(FOOD, ProbeState(), batch)
    assert len(found) == 2
    again, found_again = evaluate_probe(FOOD, state, batch)
    assert (again, found_again) == (state, [])
    # readings given out of order are judged in time order
    shuffled, found_shuffled = evaluate_probe(FOOD, ProbeState(), list(reversed(batch)))
    assert (shuffled, found_shuffled) == (state, found)


def test_state_json_round_trip_and_garbage() -> None:
    state, _ = run(PIT, [110.0, 125.0], step=40)
    assert ProbeState.from_json(state.to_json()) == state
    assert ProbeState.from_json(None) == ProbeState()
    assert ProbeState.from_json({"armed": 5}) == ProbeState()
    device = DeviceState(T0, "online", T0, frozenset({DEVICE_OFFLINE}))
    assert DeviceState.from_json(device.to_json()) == device
    assert DeviceState.from_json({"last_seen": "not a time"}) == DeviceState()


# --- devices ------------------------------------------------------------------------------


def device(state: DeviceState, now_s: float, **kwargs: object) -> tuple[DeviceState, list[str]]:
    now = T0 + timedelta(seconds=now_s)
    new, found = evaluate_device(state, now, device_name="Smoker", **kwargs)  # type: ignore[arg-type]
    return new, [f"{t.kind}:{t.action}" for t in found]


def test_silence_longer_than_offline_seconds_opens_and_data_clears() -> None:
    state, found = device(DeviceState(), 0, seen_at=T0)
    assert found == []
    state, found = device(state, 120)
    assert found == []  # exactly the limit: not yet
    state, found = device(state, 121)
    assert found == ["device_offline:open"]
    state, found = device(state, 200)
    assert found == []  # once
    state, found = device(state, 201, seen_at=T0 + timedelta(seconds=201))
    assert found == ["device_offline:clear"]


def test_never_seen_device_is_not_offline() -> None:
    assert device(DeviceState(), 10_000)[1] == []


def test_availability_topic_offline_and_online() -> None:
    state, _ = device(DeviceState(), 0, seen_at=T0)
    state, found = device(state, 5, status="offline", status_at=T0 + timedelta(seconds=5))
    assert found == ["device_offline:open"]
    _, _msg = evaluate_device(state, T0, device_name="Smoker")
    state, found = device(state, 6, status="online", status_at=T0 + timedelta(seconds=6))
    assert found == ["device_offline:clear"]
    # an older "offline" (delivered late) does not override the newer "online"
    state, found = device(state, 7, status="offline", status_at=T0 + timedelta(seconds=4))
    assert found == []
    assert state.availability == "online"


def test_offline_transition_message() -> None:
    state = DeviceState(last_seen=T0)
    _, [opened] = evaluate_device(state, T0 + timedelta(seconds=300), device_name="Smoker")
    assert opened.message == "Smoker no data for 300 s"
    assert (opened.value, opened.threshold, opened.probe_id) == (300.0, 120.0, None)


def test_eta() -> None:
    assert eta_seconds(63.0, 93.0, 0.5) == 3600.0
    assert eta_seconds(93.5, 93.0, -1.0) == 0.0
    assert eta_seconds(60.0, 93.0, 0.0) is None
    assert eta_seconds(60.0, 93.0, -0.2) is None
    assert eta_seconds(None, 93.0, 1.0) is None
    assert eta_seconds(60.0, None, 1.0) is None
    assert eta_seconds(60.0, 93.0, float("nan")) is None


# --- properties ---------------------------------------------------------------------------

temperature = st.one_of(st.none(), st.floats(min_value=-20, max_value=300, allow_nan=False))
probe_settings = st.builds(
    ProbeSettings,
    probe_id=st.just("p"),
    name=st.just("P"),
    role=st.sampled_from(["pit", "food", "ambient"]),
    target_c=st.one_of(st.none(), st.floats(60, 120)),
    high_c=st.one_of(st.none(), st.floats(100, 200)),
    low_c=st.one_of(st.none(), st.floats(0, 100)),
    setpoint_c=st.one_of(st.none(), st.floats(90, 150)),
    pit_band_c=st.one_of(st.none(), st.floats(0.5, 30)),
)


@settings(max_examples=300, deadline=None)
@given(probe_settings, st.lists(temperature, max_size=80), st.integers(1, 60))
def test_each_kind_alternates_open_then_clear(
    probe: ProbeSettings, temps: list[float | None], step: int
) -> None:
    state, found = evaluate_probe(probe, ProbeState(), readings(temps, step=step))
    by_kind: dict[str, list[str]] = defaultdict(list)
    for t in found:
        by_kind[t.kind].append(t.action)
    for actions in by_kind.values():
        assert actions == ["open", "clear"] * (len(actions) // 2) + ["open"] * (len(actions) % 2)
    assert state.active == {k for k, a in by_kind.items() if a[-1] == "open"}


@settings(max_examples=200, deadline=None)
@given(
    probe_settings,
    st.lists(temperature, max_size=80),
    st.lists(st.integers(0, 80), max_size=5),
)
def test_batches_and_restarts_give_the_same_alarms(
    probe: ProbeSettings, temps: list[float | None], cuts: list[int]
) -> None:
    """However the readings are split into batches (the state saved as JSON and reloaded
    between them, as across a restart), and whatever batch is redelivered, the alarms are
    the same as judging them all at once."""
    whole = readings(temps, step=20)
    expected_state, expected = evaluate_probe(probe, ProbeState(), whole)
    state, found = ProbeState(), []
    bounds = sorted({0, len(whole), *(c for c in cuts if c <= len(whole))})
    for lo, hi in itertools.pairwise(bounds):
        state = ProbeState.from_json(state.to_json())
        state, more = evaluate_probe(probe, state, whole[lo:hi])
        found += more
        state, again = evaluate_probe(probe, state, whole[lo:hi])  # redelivered
        assert again == []
    assert found == expected
    assert state.active == expected_state.active


@settings(max_examples=200, deadline=None)
@given(
    st.floats(60, 120),
    st.lists(st.floats(0, 0.99), min_size=1, max_size=60),
    st.floats(0.01, 3.0),
)
def test_noise_within_the_hysteresis_never_flaps(
    target: float, noise: list[float], h: float
) -> None:
    """Once reached, a temperature wobbling less than the hysteresis below the target keeps
    one alarm open: it never clears and reopens."""
    probe = ProbeSettings("p", "P", "food", target_c=target)
    config = AlarmConfig(hysteresis_c=h)
    temps = [target] + [target - n * h for n in noise]
    _, found = evaluate_probe(probe, ProbeState(), readings(temps), config)
    assert [(t.kind, t.action) for t in found] == [(TARGET, "open")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 400),
            st.sampled_from(["data", "online", "offline", "tick"]),
        ),
        max_size=40,
    )
)
def test_device_alarm_alternates_and_matches_its_condition(
    events: list[tuple[int, str]],
) -> None:
    state, actions, clock = DeviceState(), [], 0
    for delta, what in events:
        clock += delta
        now = T0 + timedelta(seconds=clock)
        kwargs: dict[str, object] = {}
        if what == "data":
            kwargs["seen_at"] = now
        elif what in ("online", "offline"):
            kwargs.update(status=what, status_at=now)
        state, found = evaluate_device(state, now, device_name="D", **kwargs)  # type: ignore[arg-type]
        actions += [t.action for t in found]
        silent = state.last_seen is not None and (now - state.last_seen).total_seconds() > 120
        assert (DEVICE_OFFLINE in state.active) == (state.availability == "offline" or silent)
    assert actions == ["open", "clear"] * (len(actions) // 2) + ["open"] * (len(actions) % 2)


@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0])
def test_eta_matches_the_time_a_steady_climb_takes(rate: float) -> None:
    eta = eta_seconds(60.0, 90.0, rate)
    assert eta == pytest.approx(30.0 / rate * 60)
