"""The warm pool's policy: fleeting's schedule semantics (five-field cron on a time zone's wall
clock, last match wins), the refill/stop plan's invariants, max_use, cost and the queue-time
histogram."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.runners.pool_policy import (
    QUEUE_BUCKETS,
    IdleRunner,
    Policy,
    Target,
    back_to_pool,
    histogram,
    parse_duration,
    parse_period,
    plan,
    running_cost,
    target,
)

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # a Monday; 10:30 in Berlin


def policy(
    periods: list[str], idle: int, zone: str = "UTC", idle_time: int | None = None
) -> Policy:
    return Policy(tuple(parse_period(p) for p in periods), zone, idle, idle_time)


@pytest.mark.parametrize(
    ("period", "moment", "matches"),
    [
        ("* * * * *", datetime(2026, 1, 1, 0, 0), True),
        ("* 8-18 * * mon-fri", datetime(2026, 12, 7, 8, 0), True),  # Monday 08:00
        ("* 8-18 * * mon-fri", datetime(2026, 12, 7, 19, 0), False),
        ("* 8-18 * * mon-fri", datetime(2026, 12, 6, 9, 0), False),  # Sunday
        ("* * * * 0", datetime(2026, 12, 6, 9, 0), True),  # 0 is Sunday
        ("* * * * 7", datetime(2026, 12, 6, 9, 0), True),  # so is 7
        ("*/15 * * * *", datetime(2026, 12, 6, 9, 45), True),
        ("*/15 * * * *", datetime(2026, 12, 6, 9, 46), False),
        ("0 0 1 jan *", datetime(2026, 1, 1, 0, 0), True),
        # both day fields restricted: either may match (cron's rule)
        ("* * 13 * fri", datetime(2026, 12, 4, 12, 0), True),  # a Friday, not the 13th
        ("* * 13 * fri", datetime(2026, 12, 13, 12, 0), True),  # the 13th, a Sunday
        ("* * 13 * fri", datetime(2026, 12, 14, 12, 0), False),
        ("* * 13 * *", datetime(2026, 12, 14, 12, 0), False),
    ],
)
def test_periods_are_standard_cron(period: str, moment: datetime, matches: bool) -> None:
    assert parse_period(period).matches(moment) is matches


@pytest.mark.parametrize(
    "bad", ["* * * *", "60 * * * *", "* * * * mon-xyz", "* * 0 * *", "a b c d e"]
)
def test_bad_periods_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="period"):
        parse_period(bad)


def test_the_last_matching_schedule_entry_wins_on_its_own_time_zone() -> None:
    office = policy(["* 8-18 * * mon-fri"], 5, "Europe/Berlin", idle_time=1800)
    rush = policy(["* 10 * * mon"], 9, "Europe/Berlin")
    assert target(1, 600, [], NOW) == Target(1, 600)
    assert target(1, 600, [office], NOW) == Target(5, 1800)
    assert target(1, 600, [office, rush], NOW) == Target(9, 600)  # rush matches, comes last
    assert target(1, 600, [rush, office], NOW) == Target(5, 1800)
    # 09:30 UTC is 10:30 in Berlin but 04:30 in New York: outside office hours there
    assert target(1, 600, [policy(["* 8-18 * * *"], 5, "America/New_York")], NOW) == Target(1, 600)


def test_durations() -> None:
    assert [parse_duration(v) for v in (0, 90, "45s", "20m", "1h30m", "2h")] == [
        0,
        90,
        45,
        1200,
        5400,
        7200,
    ]
    for bad in ("", "soon", "10 minutes", -1, True, "1d"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def idle(count: int, minutes_ago: list[int] | None = None) -> list[IdleRunner]:
    ages = minutes_ago or [60] * count
    return [IdleRunner(f"r{i}", NOW - timedelta(minutes=m)) for i, m in enumerate(ages)]


def test_refill_counts_launching_runners_and_respects_max_concurrent() -> None:
    assert plan(Target(3, 600), idle(1), 0, 1, 10, NOW).launch == 2
    assert plan(Target(3, 600), idle(1), 1, 2, 10, NOW).launch == 1
    assert plan(Target(3, 600), idle(1), 0, 9, 10, NOW).launch == 1  # one slot left
    assert plan(Target(3, 600), [], 0, 10, 10, NOW).launch == 0


def test_surplus_stops_longest_idle_first_and_only_after_idle_time() -> None:
    runners = idle(4, [1, 30, 5, 50])  # r1 idle 30 min, r3 50 min
    decided = plan(Target(2, 600), runners, 0, 4, 10, NOW)
    assert decided == plan(Target(2, 600), list(reversed(runners)), 0, 4, 10, NOW)
    assert decided.launch == 0
    assert decided.stop == ("r3", "r1")
    # the two surplus ones are the longest idle; one has been idle only 5 min of 20
    assert plan(Target(2, 1200), runners, 0, 4, 10, NOW).stop == ("r3", "r1")
    assert plan(Target(1, 1200), runners, 0, 4, 10, NOW).stop == ("r3", "r1")  # r2: 5 min
    assert plan(Target(4, 0), runners, 0, 4, 10, NOW).stop == ()


@given(
    wanted=st.integers(0, 20),
    idle_time=st.integers(0, 7200),
    ages=st.lists(st.integers(0, 240), max_size=25),
    launching=st.integers(0, 10),
    other_live=st.integers(0, 30),
    max_concurrent=st.integers(1, 40),
)
def test_a_pass_never_overshoots(
    wanted: int,
    idle_time: int,
    ages: list[int],
    launching: int,
    other_live: int,
    max_concurrent: int,
) -> None:
    runners = idle(len(ages), ages) if ages else []
    live = len(runners) + launching + other_live
    decided = plan(Target(wanted, idle_time), runners, launching, live, max_concurrent, NOW)
    assert not (decided.launch and decided.stop)  # one direction per pass
    assert decided.launch >= 0
    assert live + decided.launch <= max(live, max_concurrent)  # never past max_concurrent
    ready_after = len(runners) + launching + decided.launch - len(decided.stop)
    assert ready_after <= max(wanted, len(runners) + launching)  # never more than needed
    if decided.stop:
        assert ready_after >= wanted  # never below the target
        stopped = [r for r in runners if r.name in decided.stop]
        assert all(NOW - r.idle_since >= timedelta(seconds=idle_time) for r in stopped)
        longest_first = sorted(runners, key=lambda r: (r.idle_since, r.name))
        surplus = len(runners) - max(0, wanted - launching)
        assert set(decided.stop) <= {r.name for r in longest_first[:surplus]}
    if len(runners) + launching < wanted:
        assert decided.launch == min(
            wanted - len(runners) - launching, max(0, max_concurrent - live)
        )


@given(st.integers(0, 50), st.integers(1, 50))
def test_max_use(uses: int, max_use: int) -> None:
    assert back_to_pool(uses, max_use) is (uses < max_use)


def test_cost_is_hours_times_price() -> None:
    start = NOW - timedelta(hours=2)
    assert running_cost(start, NOW - timedelta(minutes=30), NOW, 0.1) == pytest.approx(0.15)
    assert running_cost(start, None, NOW, 0.1) == pytest.approx(0.2)  # still running: until now
    assert running_cost(start, None, NOW, None) is None
    assert running_cost(None, None, NOW, 0.1) is None


@given(st.lists(st.floats(0, 10_000, allow_nan=False), max_size=50))
def test_histogram_is_cumulative(values: list[float]) -> None:
    counts = histogram(values)
    assert len(counts) == len(QUEUE_BUCKETS) + 1
    assert counts == sorted(counts)
    assert counts[-1] == len(values)
    for bound, count in zip(QUEUE_BUCKETS, counts, strict=False):
        assert count == sum(1 for v in values if v <= bound)
