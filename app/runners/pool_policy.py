"""The warm pool's policy, pure: how many idle runners a profile keeps at a given moment, which
idle ones are surplus, whether a runner goes back to the pool after a job, and what a runner
costs.

It follows GitLab's docker-autoscaler / fleeting policies: a profile's ``pool`` has an
``idle_count`` (ready runners kept launched and registered) and an ``idle_time`` (how long a
surplus idle runner may wait before it is stopped); ``schedule`` entries override both during
their ``periods`` -- standard five-field cron expressions read on the entry's ``timezone`` wall
clock, the **last** matching entry winning, as fleeting's ``[[runners.autoscaler.policy]]``.
``max_use`` lets one runner take that many jobs before it is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.common.schedule_expressions import field_values

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

#: Queue-time histogram buckets in seconds (Prometheus and GraphQL share them).
QUEUE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class Period:
    """A standard cron expression (``minute hour day-of-month month day-of-week``) matched
    against one wall-clock minute; day-of-week 0-7 (0 and 7: Sunday) or ``SUN``-``SAT``."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def matches(self, local: datetime) -> bool:
        if local.minute not in self.minutes or local.hour not in self.hours:
            return False
        if local.month not in self.months:
            return False
        weekday = (local.weekday() + 1) % 7  # Monday=0 in Python, 1 in cron
        day_ok, weekday_ok = local.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:  # cron: both restricted means either may match
            return day_ok and weekday_ok
        return day_ok or weekday_ok


def parse_period(text: str) -> Period:
    """Parse one period; ValueError names what is wrong."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"period {text!r}: expected 5 fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = (f.upper() for f in fields)
    try:
        weekdays = field_values(weekday, 0, 7, _DAYS)
        parsed = Period(
            text=text,
            minutes=frozenset(field_values(minute, 0, 59, {})),
            hours=frozenset(field_values(hour, 0, 23, {})),
            days=frozenset(field_values(day, 1, 31, {})),
            months=frozenset(field_values(month, 1, 12, _MONTHS)),
            weekdays=frozenset({d % 7 for d in weekdays}),
            any_day=day == "*",
            any_weekday=weekday == "*",
        )
    except (ValueError, KeyError):
        raise ValueError(f"period {text!r} is not a cron expression") from None
    return parsed


def parse_duration(value: object) -> int:
    """Seconds from a whole number of seconds or a duration like ``45s``, ``20m``, ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 20m")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    text = str(value).strip().lower()
    found = _DURATION.match(text)
    if not text or found is None:
        raise ValueError(f"duration {value!r}: use seconds or text like 45s, 20m, 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class Policy:
    """One schedule entry: during ``periods`` (in ``timezone``) keep ``idle_count`` runners,
    stopping surplus ones after ``idle_time`` (seconds; None: the pool's own)."""

    periods: tuple[Period, ...]
    timezone: str
    idle_count: int
    idle_time: int | None


@dataclass(frozen=True, slots=True)
class Target:
    idle_count: int
    idle_time: int  # seconds


def target(idle_count: int, idle_time: int, schedule: Sequence[Policy], now: datetime) -> Target:
    """What the pool keeps at ``now`` (aware): the last schedule entry one of whose periods
    matches the minute, else the pool's own figures."""
    chosen = Target(idle_count, idle_time)
    for policy in schedule:
        local = now.astimezone(zone(policy.timezone))
        if any(period.matches(local) for period in policy.periods):
            chosen = Target(
                policy.idle_count, idle_time if policy.idle_time is None else policy.idle_time
            )
    return chosen


@dataclass(frozen=True, slots=True)
class IdleRunner:
    name: str
    idle_since: datetime


@dataclass(frozen=True, slots=True)
class PoolPlan:
    launch: int  # new pool runners to launch
    stop: tuple[str, ...]  # idle runners to stop (surplus, idle longer than idle_time)


def plan(
    wanted: Target,
    idle: Sequence[IdleRunner],
    launching: int,
    live: int,
    max_concurrent: int,
    now: datetime,
) -> PoolPlan:
    """Refill the pool up to ``wanted.idle_count`` (runners already launching count, and no
    launch goes past ``max_concurrent`` live runners of the profile), or stop the surplus: the
    runners idle longest first, each only once it has been idle ``idle_time``."""
    ready = len(idle) + launching
    if ready < wanted.idle_count:
        room = max(0, max_concurrent - live)
        return PoolPlan(min(wanted.idle_count - ready, room), ())
    surplus = len(idle) - max(0, wanted.idle_count - launching)
    if surplus <= 0:
        return PoolPlan(0, ())
    longest_first = sorted(idle, key=lambda r: (r.idle_since, r.name))
    limit = timedelta(seconds=wanted.idle_time)
    doomed = [r.name for r in longest_first[:surplus] if now - r.idle_since >= limit]
    return PoolPlan(0, tuple(doomed))


def back_to_pool(uses: int, max_use: int) -> bool:
    """After a job: a pool runner that has run fewer than ``max_use`` jobs waits for the next."""
    return uses < max_use


def running_cost(
    started: datetime | None, stopped: datetime | None, now: datetime, hourly: float | None
) -> float | None:
    """Instance-hours times the hourly price (None when no price is known)."""
    if hourly is None or started is None:
        return None
    hours = max(0.0, ((stopped or now) - started).total_seconds() / 3600)
    return round(hours * hourly, 6)


def histogram(values: Sequence[float], buckets: Sequence[float] = QUEUE_BUCKETS) -> list[int]:
    """Cumulative counts per upper bound (Prometheus' ``le``), then +Inf last."""
    counts = [sum(1 for v in values if v <= bound) for bound in buckets]
    return [*counts, len(values)]
