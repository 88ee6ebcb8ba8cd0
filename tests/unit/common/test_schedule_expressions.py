"""Schedule expressions: what AWS accepts, and the next fire (examples + properties)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.common.schedule_expressions import (
    At,
    Cron,
    InvalidExpression,
    Rate,
    next_fire,
    parse,
)

NOW = datetime(2026, 12, 5, 12, 0, 30, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
    ],
)
def test_rates_aws_accepts(text: str, seconds: int) -> None:
    assert parse(text) == Rate(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "rate(1 minutes)",  # plural for 1
        "rate(5 minute)",  # singular for 5
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(1.5 hours)",
        "rate(99999999999 days)",  # no next fire before 2200
        "rate(5 weeks)",
        "rate(5  minutes)",
        "rate 5 minutes",
        "cron(0 10 * * * *)",  # neither day field is ?
        "cron(0 10 ? * ? *)",  # both are
        "cron(60 10 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 10 32 * ? *)",
        "cron(0 10 * 13 ? *)",
        "cron(0 10 ? * 8 *)",
        "cron(0 10 ? * 3#6 *)",
        "cron(0 10 * * ? 1969)",
        "cron(0 10 * * ?)",  # five fields
        "cron(0 10 * * ? * *)",
        "cron(0 10 * * ? FOO)",
        "cron(10-5 * * * ? *)",
        "cron(*/0 * * * ? *)",
        "cron(*/60 * * * ? *)",  # refused by AWS (aws/aws-sdk-js#4212)
        "at(2026-12-05T12:00:00)",  # not for rules
        "",
        "every 5 minutes",
    ],
)
def test_expressions_aws_refuses(text: str) -> None:
    with pytest.raises(InvalidExpression):
        parse(text)


def test_at_is_for_the_scheduler() -> None:
    assert parse("at(2026-12-24T18:00:00)", allow_at=True) == At(datetime(2026, 12, 24, 18))
    with pytest.raises(InvalidExpression):
        parse("at(2026-02-30T18:00:00)", allow_at=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cron(0/15 * * * ? *)", datetime(2026, 12, 5, 12, 15, tzinfo=UTC)),
        ("cron(0 10 * * ? *)", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        ("cron(0 18 ? * MON-FRI *)", datetime(2026, 12, 7, 18, 0, tzinfo=UTC)),
        ("cron(0 10 ? * 6L *)", datetime(2026, 12, 25, 10, 0, tzinfo=UTC)),  # last Friday
        ("cron(0 10 ? * 3#2 *)", datetime(2026, 12, 8, 10, 0, tzinfo=UTC)),  # second Tuesday
        ("cron(0 8 L * ? *)", datetime(2026, 12, 31, 8, 0, tzinfo=UTC)),
        ("cron(0 8 LW * ? *)", datetime(2026, 12, 31, 8, 0, tzinfo=UTC)),  # a Thursday
        ("cron(0 8 6W * ? *)", datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),  # Sun 6 -> Mon 7
        ("cron(0 8 5W * ? *)", datetime(2027, 1, 5, 8, 0, tzinfo=UTC)),  # Sat 5 Dec -> Fri 4
        ("cron(0 8 1W * ? *)", datetime(2027, 1, 1, 8, 0, tzinfo=UTC)),
        ("cron(15 12 * * ? *)", datetime(2026, 12, 5, 12, 15, tzinfo=UTC)),
        ("cron(0 12 * * ? 2026)", datetime(2026, 12, 6, 12, 0, tzinfo=UTC)),
        ("cron(0 0 1 JAN,JUL ? 2027-2030)", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("cron(0 12 5 12 ? 2026)", None),  # its one tick has passed
        ("rate(5 minutes)", datetime(2026, 12, 5, 12, 5, 30, tzinfo=UTC)),
    ],
)
def test_next_fire_examples(text: str, expected: datetime | None) -> None:
    assert next_fire(parse(text), NOW) == expected


def test_rate_counts_from_its_anchor() -> None:
    anchor = datetime(2026, 12, 5, 11, 58, 0, tzinfo=UTC)
    assert next_fire(parse("rate(1 minute)"), NOW, anchor=anchor) == datetime(
        2026, 12, 5, 12, 1, tzinfo=UTC
    )


def test_dst_gap_skips_the_missing_time_and_fold_fires_once() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    daily = parse("cron(30 2 * * ? *)")
    # 2027-03-28: clocks jump 02:00 -> 03:00; 02:30 does not exist that day.
    before = datetime(2027, 3, 27, 2, 0, tzinfo=berlin).astimezone(UTC)
    first = next_fire(daily, before, zone=berlin)
    assert first == datetime(2027, 3, 27, 1, 30, tzinfo=UTC)
    assert next_fire(daily, first, zone=berlin) == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    # 2027-10-31: 02:30 happens twice; it fires at the first one only.
    before = datetime(2027, 10, 30, 23, 0, tzinfo=UTC)
    fold = next_fire(daily, before, zone=berlin)
    assert fold == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert next_fire(daily, fold, zone=berlin) == datetime(2027, 11, 1, 1, 30, tzinfo=UTC)


def test_at_fires_once_in_its_zone() -> None:
    at = parse("at(2026-12-24T18:00:00)", allow_at=True)
    zone = ZoneInfo("America/New_York")
    assert next_fire(at, NOW, zone=zone) == datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
    assert next_fire(at, datetime(2026, 12, 25, tzinfo=UTC), zone=zone) is None


# --- properties -----------------------------------------------------------------------------

ZONES = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2150, 1, 1), timezones=st.just(UTC)
)


@st.composite
def cron_texts(draw: st.DrawFn) -> str:
    minute = draw(st.sampled_from(["*", "0", "0/15", "5,35", "10-20", "*/7"]))
    hour = draw(st.sampled_from(["*", "0", "2", "9-17", "0/6", "23"]))
    month = draw(st.sampled_from(["*", "1", "FEB", "3-5", "JAN,JUL", "*/2"]))
    year = draw(st.sampled_from(["*", "*", "2000-2199", "*/3"]))
    if draw(st.booleans()):
        dom = draw(st.sampled_from(["*", "1", "15", "L", "LW", "10W", "1-7", "29", "31"]))
        dow = "?"
    else:
        dom = "?"
        dow = draw(st.sampled_from(["*", "1", "MON-FRI", "6L", "3#2", "L", "SAT,SUN", "2#5"]))
    return f"cron({minute} {hour} {dom} {month} {dow} {year})"


@settings(max_examples=300, deadline=None)
@given(cron_texts(), instants, ZONES)
def test_cron_next_fire_is_after_now_and_matches_the_fields(
    text: str, now: datetime, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    cron = parse(text)
    assert isinstance(cron, Cron)
    fire = next_fire(cron, now, zone=zone)
    if fire is None:  # nothing left before 2200
        return
    assert fire > now
    local = fire.astimezone(zone)
    assert (local.second, local.microsecond) == (0, 0)
    assert local.minute in cron.minutes
    assert local.hour in cron.hours
    assert cron.day_matches(local.date())
    # and nothing matching was skipped: no earlier whole minute in between matches.
    probe = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    steps = 0
    while probe < fire and steps < 2000:
        there = probe.astimezone(zone)
        assert not (
            there.minute in cron.minutes
            and there.hour in cron.hours
            and cron.day_matches(there.date())
            and there.fold == 0
        ), f"{there} matches {text} before {local}"
        probe += timedelta(minutes=1)
        steps += 1


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=1000),
    st.sampled_from(["minute", "hour", "day"]),
    instants,
    st.integers(min_value=0, max_value=10**8),
)
def test_rate_fires_on_its_grid_strictly_after_now(
    value: int, unit: str, anchor: datetime, offset: int
) -> None:
    rate = parse(f"rate({value} {unit}{'' if value == 1 else 's'})")
    assert isinstance(rate, Rate)
    now = anchor + timedelta(seconds=offset)
    fire = next_fire(rate, now, anchor=anchor)
    assert fire is not None
    assert now < fire <= now + timedelta(seconds=rate.seconds)
    assert (fire - anchor).total_seconds() % rate.seconds == 0


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["1", "15", "28", "30", "31"]), instants)
def test_nearest_weekday_is_a_weekday_of_the_same_month(day: str, now: datetime) -> None:
    cron = parse(f"cron(0 0 {day}W * ? *)")
    fire = next_fire(cron, now)
    assert fire is not None
    assert fire.weekday() < 5
    wanted = min(int(day), calendar.monthrange(fire.year, fire.month)[1])
    assert abs(fire.day - wanted) <= 2


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=7), st.integers(min_value=1, max_value=4), instants)
def test_nth_weekday_is_that_weekday_in_that_week(weekday: int, n: int, now: datetime) -> None:
    fire = next_fire(parse(f"cron(0 0 ? * {weekday}#{n} *)"), now)
    assert fire is not None
    assert (fire.weekday() + 1) % 7 + 1 == weekday
    assert (fire.day - 1) // 7 + 1 == n
    assert date(fire.year, fire.month, fire.day)  # a real date
