"""When a Scheduler schedule fires next: StartDate/EndDate, time zones, flexible windows, state."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.schedules.models import Schedule
from app.schedules.service import first_fire

NOW = datetime(2026, 12, 5, 12, 0, 30, tzinfo=UTC)


def schedule(expression: str, **fields: object) -> Schedule:
    values: dict[str, object] = {
        "expression": expression,
        "timezone": "UTC",
        "state": "ENABLED",
        "flexible_window": {"Mode": "OFF"},
        "created_at": NOW,
        "start_date": None,
        "end_date": None,
    }
    values.update(fields)
    return Schedule(**values)


def test_rate_counts_from_the_start_date() -> None:
    s = schedule("rate(1 hour)", start_date=NOW + timedelta(days=1))
    first_fire(s, NOW)
    assert s.next_fire_at == NOW + timedelta(days=1, hours=1)


def test_nothing_after_the_end_date() -> None:
    s = schedule("cron(0 9 * * ? *)", end_date=NOW + timedelta(hours=1))
    first_fire(s, NOW)
    assert s.next_fire_at is None


def test_cron_in_a_time_zone() -> None:
    s = schedule("cron(0 9 * * ? *)", timezone="America/New_York")
    first_fire(s, NOW)
    assert s.next_fire_at == datetime(2026, 12, 5, 14, 0, tzinfo=UTC)  # 09:00 EST


def test_at_in_the_past_never_fires_and_disabled_never_fires() -> None:
    past = schedule("at(2026-01-01T00:00:00)")
    first_fire(past, NOW)
    assert past.next_fire_at is None
    disabled = schedule("rate(5 minutes)", state="DISABLED")
    first_fire(disabled, NOW)
    assert disabled.next_fire_at is None


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=1440), st.integers(min_value=0, max_value=2**32))
def test_a_flexible_window_fires_within_the_window(minutes: int, seed: int) -> None:
    s = schedule(
        "cron(0 10 * * ? *)",
        flexible_window={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": minutes},
    )
    first_fire(s, NOW, random.Random(seed))
    due = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    assert s.next_fire_at is not None
    assert due <= s.next_fire_at <= due + timedelta(minutes=minutes)
