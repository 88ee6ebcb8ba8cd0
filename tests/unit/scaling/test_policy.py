"""The scaling policy: examples for each rule, then hypothesis properties over random series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.scaling.policy import (
    Observation,
    PolicyConfig,
    PolicyState,
    backlog_per_worker,
    decide,
    recommend,
    simulate,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def obs(seconds: float = 0, **kwargs: int | float | None) -> Observation:
    return Observation(now=at(seconds), **kwargs)  # type: ignore[arg-type]


CONFIG = PolicyConfig(min_workers=0, max_workers=10, concurrency=2)


class TestRecommend:
    def test_no_demand_no_workers(self) -> None:
        assert recommend(CONFIG, 0, None) == 0

    def test_one_message_activates_one_worker(self) -> None:
        assert recommend(CONFIG, 1, None) == 1

    def test_backlog_per_worker_defaults_to_concurrency(self) -> None:
        assert recommend(CONFIG, 4, None) == 2
        assert recommend(CONFIG, 5, None) == 3

    def test_capped_at_max(self) -> None:
        assert recommend(CONFIG, 10_000, None) == 10

    def test_aws_backlog_per_instance_from_latency_and_service_time(self) -> None:
        config = PolicyConfig(concurrency=2, target_latency_seconds=10)
        # 0.5 s per task, 10 s acceptable wait: 20 per slot, 40 per worker.
        assert backlog_per_worker(config, 0.5) == 40
        assert recommend(config, 81, 0.5) == 3

    def test_slow_tasks_never_ask_for_less_than_one_per_slot(self) -> None:
        config = PolicyConfig(concurrency=2, target_latency_seconds=1)
        assert backlog_per_worker(config, 30.0) == 2

    def test_explicit_backlog_target_without_service_time(self) -> None:
        config = PolicyConfig(concurrency=2, target_backlog_per_worker=5, target_latency_seconds=9)
        assert backlog_per_worker(config, None) == 5

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"min_workers": -1},
            {"min_workers": 3, "max_workers": 2},
            {"max_workers": 0},
            {"concurrency": 0},
            {"target_backlog_per_worker": 0},
            {"target_latency_seconds": -1},
            {"stabilization_seconds": -1},
        ],
    )
    def test_invalid_config(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="must be"):
            PolicyConfig(**kwargs)


class TestDecide:
    def test_scales_up_immediately(self) -> None:
        decision = decide(CONFIG, obs(queued=9, live_workers=1), PolicyState())
        assert decision.desired == 5
        assert decision.direction(1) == 1
        assert "scale up" in decision.reason

    def test_scale_down_waits_for_the_stabilization_window(self) -> None:
        state = decide(CONFIG, obs(0, queued=10, live_workers=0), PolicyState()).state
        held = decide(CONFIG, obs(60, queued=2, live_workers=5), state)
        assert held.desired == 5
        assert held.recommendation == 1
        assert held.reason == "stabilizing"
        later = decide(CONFIG, obs(301, queued=2, live_workers=5), held.state)
        assert later.desired == 1  # the 5 fell out of the window; the 1 at t=60 is the highest

    def test_scale_down_goes_to_highest_recommendation_in_window(self) -> None:
        state = PolicyState(recommendations=((at(0), 5), (at(100), 3), (at(200), 2)))
        decision = decide(CONFIG, obs(320, queued=1, live_workers=5), state)
        assert decision.desired == 3

    def test_never_below_busy_workers(self) -> None:
        config = PolicyConfig(max_workers=4, concurrency=1, stabilization_seconds=0)
        decision = decide(config, obs(0, running=1, live_workers=6, busy_workers=6), PolicyState())
        assert decision.desired == 6
        assert "busy" in decision.reason

    def test_keeps_one_worker_during_the_idle_cooldown(self) -> None:
        config = PolicyConfig(concurrency=1, stabilization_seconds=0, idle_cooldown_seconds=300)
        state = decide(config, obs(0, queued=3, live_workers=0), PolicyState()).state
        during = decide(config, obs(100, live_workers=3), state)
        assert during.desired == 1
        after = decide(config, obs(300, live_workers=1), during.state)
        assert after.desired == 0
        assert after.reason == "idle past cooldown"

    def test_idle_past_cooldown_skips_the_stabilization_window(self) -> None:
        config = PolicyConfig(concurrency=1, stabilization_seconds=900, idle_cooldown_seconds=60)
        state = decide(config, obs(0, queued=4, live_workers=0), PolicyState()).state
        assert decide(config, obs(30, live_workers=4), state).desired == 4
        assert decide(config, obs(61, live_workers=4), state).desired == 0

    def test_min_workers_is_kept_when_idle(self) -> None:
        config = PolicyConfig(min_workers=2, concurrency=1, idle_cooldown_seconds=0)
        assert decide(config, obs(0, live_workers=0), PolicyState()).desired == 2

    def test_never_active_goes_to_minimum_at_once(self) -> None:
        assert decide(CONFIG, obs(0, live_workers=3), PolicyState()).desired == 0

    def test_steady_when_matching(self) -> None:
        decision = decide(CONFIG, obs(0, queued=4, live_workers=2), PolicyState())
        assert (decision.desired, decision.reason) == (2, "steady")

    def test_history_is_pruned_to_the_window(self) -> None:
        old = PolicyState(recommendations=tuple((at(i), 9) for i in range(0, 1000, 10)))
        decision = decide(CONFIG, obs(1000, queued=1, live_workers=1), old)
        assert all(t > at(700) for t, _ in decision.state.recommendations)

    def test_reserved_and_running_count_as_demand(self) -> None:
        decision = decide(CONFIG, obs(0, queued=1, reserved=2, running=3), PolicyState())
        assert decision.desired == 3


# ---- properties -------------------------------------------------------------------------------

configs = st.builds(
    PolicyConfig,
    min_workers=st.integers(0, 3),
    max_workers=st.integers(3, 20),
    concurrency=st.integers(1, 4),
    stabilization_seconds=st.sampled_from([0.0, 30.0, 120.0, 300.0]),
    idle_cooldown_seconds=st.sampled_from([0.0, 60.0, 300.0]),
)
observations = st.builds(
    Observation,
    now=st.just(at(10_000)),
    queued=st.integers(0, 500),
    reserved=st.integers(0, 20),
    running=st.integers(0, 40),
    live_workers=st.integers(0, 25),
    busy_workers=st.integers(0, 25),
)
states = st.builds(
    PolicyState,
    recommendations=st.lists(
        st.tuples(st.integers(9_000, 10_000).map(at), st.integers(0, 20)), max_size=10
    ).map(tuple),
    last_active_at=st.none() | st.integers(9_000, 10_000).map(at),
)


@settings(max_examples=300, deadline=None)
@given(configs, observations, states)
def test_bounds(config: PolicyConfig, observed: Observation, state: PolicyState) -> None:
    decision = decide(config, observed, state)
    assert decision.desired >= observed.busy_workers
    assert decision.desired <= max(config.max_workers, observed.busy_workers)
    if observed.busy_workers <= config.max_workers:
        assert decision.desired >= min(config.min_workers, config.max_workers)
    if observed.demand > 0:
        assert decision.desired >= 1


@settings(max_examples=300, deadline=None)
@given(configs, observations, states, st.integers(0, 500))
def test_monotone_in_demand(
    config: PolicyConfig, observed: Observation, state: PolicyState, extra: int
) -> None:
    more = Observation(
        now=observed.now,
        queued=observed.queued + extra,
        reserved=observed.reserved,
        running=observed.running,
        live_workers=observed.live_workers,
        busy_workers=observed.busy_workers,
    )
    assert decide(config, more, state).desired >= decide(config, observed, state).desired


@settings(max_examples=200, deadline=None)
@given(configs, observations, states)
def test_scale_up_is_immediate(
    config: PolicyConfig, observed: Observation, state: PolicyState
) -> None:
    decision = decide(config, observed, state)
    if decision.recommendation > observed.live_workers:
        assert decision.desired >= decision.recommendation


@settings(max_examples=100, deadline=None)
@given(
    configs,
    st.integers(2, 60),
    st.lists(st.integers(-10, 10), min_size=120, max_size=120),
    st.sampled_from([5.0, 15.0]),
)
def test_no_thrash_under_noisy_demand(
    config: PolicyConfig, level: int, noise: list[int], step: float
) -> None:
    """After any scale-up, no scale-down for a whole stabilization window (or cooldown), so the
    number of direction changes is bounded by the series length over that window."""
    demands = [max(0, level + n) for n in noise]
    decisions = simulate(config, T0, step, demands)
    hold = min(config.stabilization_seconds, config.idle_cooldown_seconds)
    last_up: float | None = None
    live = config.min_workers
    changes = 0
    previous_direction = 0
    for index, decision in enumerate(decisions):
        now = index * step
        direction = decision.direction(live)
        if direction > 0:
            last_up = now
        elif direction < 0 and last_up is not None:
            assert now - last_up >= hold, (now, last_up, hold)
        if direction and previous_direction and direction != previous_direction:
            changes += 1
        if direction:
            previous_direction = direction
        live = decision.desired
    if hold > 0:
        assert changes <= 2 * (len(demands) * step / hold) + 1


@settings(max_examples=200, deadline=None)
@given(configs, st.lists(st.integers(0, 30), min_size=1, max_size=60), st.integers(0, 40))
def test_zero_only_after_cooldown(config: PolicyConfig, demands: list[int], idle: int) -> None:
    """The pool reaches zero only when no demand was seen for the whole idle cooldown."""
    step = 10.0
    series = [*demands, *([0] * idle)]
    decisions = simulate(config, T0, step, series)
    last_demand: float | None = None
    for index, (demand, decision) in enumerate(zip(series, decisions, strict=True)):
        now = index * step
        if demand:
            last_demand = now
        if decision.desired == 0 and last_demand is not None:
            assert now - last_demand >= config.idle_cooldown_seconds


def test_sustained_idle_reaches_zero() -> None:
    config = PolicyConfig(concurrency=1, stabilization_seconds=120, idle_cooldown_seconds=60)
    decisions = simulate(config, T0, 10, [5] * 6 + [0] * 30)
    assert decisions[5].desired == 5
    assert decisions[-1].desired == 0
