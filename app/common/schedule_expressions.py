"""EventBridge schedule expressions: parse ``rate``, ``cron`` and ``at``; compute the next fire.

A pure core (DESIGN.md): data in, data out, no clock it is not given. Used by the bus's
scheduled rules and by EventBridge Scheduler's schedules.

What AWS accepts (EventBridge "Schedule expressions for rules", Scheduler "Schedule types"):

- ``rate(value unit)``: a positive whole number and ``minute``/``hour``/``day`` — singular for 1,
  plural (``minutes``, ``hours``, ``days``) otherwise.
- ``cron(Minutes Hours Day-of-month Month Day-of-week Year)``: six fields; ``, - * /`` in all of
  them, ``?`` in exactly one of the two day fields (the other one restricts), ``L`` and ``W`` in
  day-of-month (``L``, ``LW``, ``15W``), ``L`` and ``#`` in day-of-week (``L``, ``6L`` = last
  Friday, ``3#2`` = second Tuesday); months ``1-12`` or ``JAN-DEC``, days of week ``1-7`` or
  ``SUN-SAT`` (1 = Sunday), years 1970-2199.
- ``at(yyyy-mm-ddThh:mm:ss)``: one time (Scheduler only).

Anything else raises :class:`InvalidExpression`. Cron fields are matched on the wall clock of the
given time zone: a time that falls in a DST gap does not exist that day (the tick is skipped), a
time that occurs twice (DST fold) fires once, at its first occurrence.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

__all__ = [
    "At",
    "Cron",
    "InvalidExpression",
    "Rate",
    "ScheduleExpression",
    "field_values",
    "next_fire",
    "parse",
]

MAX_YEAR = 2199
#: Longer periods than this (about 100 years) have no next fire before ``MAX_YEAR``.
MAX_RATE_SECONDS = 100 * 366 * 86400


class InvalidExpression(ValueError):
    """The expression is not one AWS accepts."""


@dataclass(frozen=True, slots=True)
class Rate:
    seconds: int

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        """The first ``anchor + k·period`` (k ≥ 1) strictly after ``after``."""
        period = timedelta(seconds=self.seconds)
        if after < anchor:
            return anchor + period
        elapsed = (after - anchor) // period
        return anchor + (elapsed + 1) * period


@dataclass(frozen=True, slots=True)
class At:
    when: datetime  # naive: wall clock in the schedule's time zone


@dataclass(frozen=True, slots=True)
class DaySpec:
    """Day-of-month or day-of-week restriction, with AWS's L / W / # forms."""

    values: frozenset[int] = frozenset()
    last_day: bool = False  # dom "L"
    last_weekday: bool = False  # dom "LW"
    nearest_weekday: int | None = None  # dom "15W"
    last_of: int | None = None  # dow "6L": the month's last Friday
    nth: tuple[int, int] | None = None  # dow "3#2": (weekday, n)

    def dom_matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if self.last_day:
            return day.day == last
        if self.last_weekday:
            target = last
            while date(day.year, day.month, target).weekday() >= 5:
                target -= 1
            return day.day == target
        if self.nearest_weekday is not None:
            return day.day == _nearest_weekday(day.year, day.month, self.nearest_weekday)
        return day.day in self.values

    def dow_matches(self, day: date) -> bool:
        aws_dow = (day.weekday() + 1) % 7 + 1  # Monday=0 → 2; Sunday=6 → 1
        last = calendar.monthrange(day.year, day.month)[1]
        if self.last_of is not None:
            return aws_dow == self.last_of and day.day + 7 > last
        if self.nth is not None:
            weekday, n = self.nth
            return aws_dow == weekday and (day.day - 1) // 7 + 1 == n
        return aws_dow in self.values


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """Quartz's ``W``: the weekday nearest ``day`` without leaving the month."""
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday → Friday, or Monday when the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday → Monday, or Friday when the last day
        return day + 1 if day < last else day - 2
    return day


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    dom: DaySpec | None  # None: "?" (day-of-week decides) or "*"
    months: frozenset[int]
    dow: DaySpec | None
    years: frozenset[int]

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months or day.year not in self.years:
            return False
        if self.dom is not None and not self.dom.dom_matches(day):
            return False
        return self.dow is None or self.dow.dow_matches(day)

    def next_after(self, after: datetime, zone: tzinfo) -> datetime | None:
        """The first matching wall-clock minute in ``zone`` strictly after ``after`` (aware), as
        an aware UTC datetime; ``None`` if none is left before 2200."""
        local = after.astimezone(zone)
        day = local.date()
        while day.year <= MAX_YEAR:
            if day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if day.month not in self.months:
                day = (
                    date(day.year + 1, 1, 1)
                    if day.month == 12
                    else date(day.year, day.month + 1, 1)
                )
                continue
            if self.day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        candidate = _wall(day, hour, minute, zone)
                        if candidate is not None and candidate > after:
                            return candidate
            day += timedelta(days=1)
        return None


def _wall(day: date, hour: int, minute: int, zone: tzinfo) -> datetime | None:
    """The instant (UTC) of this wall-clock minute in ``zone``: ``None`` in a DST gap, the first
    occurrence in a fold."""
    naive = datetime(day.year, day.month, day.day, hour, minute)
    aware = naive.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        return None  # does not exist: the clocks jumped over it
    return instant


ScheduleExpression = Rate | Cron | At

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def parse(text: str, *, allow_at: bool = False) -> ScheduleExpression:
    """Parse an expression or raise :class:`InvalidExpression`. ``at(…)`` is Scheduler-only."""
    if not isinstance(text, str):
        raise InvalidExpression(text)
    rate = _RATE.match(text)
    if rate is not None:
        value, unit = int(rate.group(1)), rate.group(2)
        singular = unit.rstrip("s")
        if not 1 <= value * _UNIT_SECONDS[singular] <= MAX_RATE_SECONDS:
            raise InvalidExpression(text)
        if (value == 1) != (unit == singular):
            raise InvalidExpression(text)
        return Rate(value * _UNIT_SECONDS[singular])
    cron = _CRON.match(text)
    if cron is not None:
        return _parse_cron(cron.group(1), text)
    at = _AT.match(text)
    if at is not None and allow_at:
        try:
            return At(datetime.fromisoformat(at.group(1)))
        except ValueError:
            raise InvalidExpression(text) from None
    raise InvalidExpression(text)


def _parse_cron(body: str, text: str) -> Cron:
    fields = body.split(" ")
    if len(fields) != 6 or any(not f for f in fields):
        raise InvalidExpression(text)
    minute_f, hour_f, dom_f, month_f, dow_f, year_f = fields
    if (dom_f == "?") == (dow_f == "?"):
        raise InvalidExpression(text)  # exactly one of the day fields is "?"
    try:
        minutes = field_values(minute_f, 0, 59, {})
        hours = field_values(hour_f, 0, 23, {})
        months = field_values(month_f, 1, 12, _MONTHS)
        years = field_values(year_f, 1970, MAX_YEAR, {})
        dom = None if dom_f in ("?", "*") else _dom(dom_f)
        dow = None if dow_f in ("?", "*") else _dow(dow_f)
    except (ValueError, KeyError):
        raise InvalidExpression(text) from None
    return Cron(
        tuple(sorted(minutes)), tuple(sorted(hours)), dom, frozenset(months), dow, frozenset(years)
    )


def _number(token: str, names: dict[str, int]) -> int:
    if token.isdigit():
        return int(token)
    return names[token.upper()]


def field_values(field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """One cron field's values (``, - * /`` and ``names`` such as ``MON``); ValueError else.
    Also used by the runner pool's standard five-field periods."""
    result: set[int] = set()
    for part in field.split(","):
        step, stepped = 1, "/" in part
        if stepped:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or not 1 <= int(step_text) <= high - low:
                raise ValueError(field)  # AWS refuses cron(*/60 * * * ? *)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(part, names)
            end = high if stepped else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ValueError(field)
        result.update(range(start, end + 1, step))
    return result


def _dom(field: str) -> DaySpec:
    if field == "L":
        return DaySpec(last_day=True)
    if field == "LW":
        return DaySpec(last_weekday=True)
    if field.endswith("W"):
        day = int(field[:-1])
        if not 1 <= day <= 31:
            raise ValueError(field)
        return DaySpec(nearest_weekday=day)
    return DaySpec(values=frozenset(field_values(field, 1, 31, {})))


def _dow(field: str) -> DaySpec:
    if field == "L":
        return DaySpec(values=frozenset({7}))
    if field.endswith("L"):
        return DaySpec(last_of=_checked_day(field[:-1]))
    if "#" in field:
        day, n = field.split("#", 1)
        if not n.isdigit() or not 1 <= int(n) <= 5:
            raise ValueError(field)
        return DaySpec(nth=(_checked_day(day), int(n)))
    return DaySpec(values=frozenset(field_values(field, 1, 7, _DAYS)))


def _checked_day(token: str) -> int:
    day = _number(token, _DAYS)
    if not 1 <= day <= 7:
        raise ValueError(token)
    return day


def next_fire(
    expression: ScheduleExpression,
    after: datetime,
    *,
    anchor: datetime | None = None,
    zone: tzinfo = UTC,
) -> datetime | None:
    """The first fire strictly after ``after`` (aware), as aware UTC; ``None`` when the schedule
    has no fire left (an ``at`` in the past, a cron whose years have passed). ``anchor`` is when
    a rate started counting (its creation): fires fall at ``anchor + k·period``."""
    if isinstance(expression, Rate):
        return expression.next_after(after, anchor or after).astimezone(UTC)
    if isinstance(expression, Cron):
        return expression.next_after(after, zone)
    when = expression.when.replace(tzinfo=zone).astimezone(UTC)
    return when if when > after else None
