"""Scheduled rules through boto3: AWS's validation, and each tick put once as a Scheduled Event
that reaches the rule's targets (exactly once with concurrent firers, no backfill)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select, update

from app.bus.models import Delivery, Event, Rule
from app.bus.scheduled import fire_due
from app.config import Settings
from app.db import get_database
from tests.integration.bus.conftest import ACCOUNT, REGION, Live

pytestmark = pytest.mark.integration

LOG = "arn:smokehouse:handler:log"
INVALID = "Parameter ScheduleExpression is not valid."


def _error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def _rule(live: Live, name: str) -> Rule:
    with live.session() as session:
        rule = session.scalar(select(Rule).where(Rule.name == name))
        assert rule is not None
        session.expunge(rule)
        return rule


def _set_tick(live: Live, name: str, tick: datetime) -> None:
    with live.session() as session:
        session.execute(update(Rule).where(Rule.name == name).values(next_fire_at=tick))


def _events_of(live: Live, name: str) -> list[dict[str, Any]]:
    arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
    with live.session() as session:
        rows = session.scalars(
            select(Event).where(Event.source == "aws.events").order_by(Event.time)
        ).all()
        return [dict(r.envelope) for r in rows if r.envelope.get("resources") == [arn]]


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "cron(0 10 * * * *)",
        "cron(0 10 ? * ? *)",
        "cron(0 10 * * ?)",
        "at(2030-01-01T00:00:00)",
    ],
)
def test_invalid_schedule_expressions_are_refused_in_aws_words(
    events: Any, uid: str, expression: str
) -> None:
    with pytest.raises(ClientError) as caught:
        events.put_rule(Name=f"bad-{uid}", ScheduleExpression=expression)
    assert _error(caught) == ("ValidationException", INVALID)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name=f"bad-{uid}")


def test_schedules_only_on_the_default_bus(events: Any, uid: str) -> None:
    events.create_event_bus(Name=f"custom-{uid}")
    with pytest.raises(ClientError) as caught:
        events.put_rule(
            Name=f"r-{uid}", EventBusName=f"custom-{uid}", ScheduleExpression="rate(1 hour)"
        )
    assert _error(caught) == (
        "ValidationException",
        "ScheduleExpression is supported only on the default event bus.",
    )


def test_a_tick_puts_one_scheduled_event_that_reaches_the_targets(
    live: Live, events: Any, uid: str
) -> None:
    name = f"every-minute-{uid}"
    before = datetime.now(UTC)
    arn = events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")["RuleArn"]
    assert arn == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
    events.put_targets(Rule=name, Targets=[{"Id": "log", "Arn": LOG}])
    assert events.describe_rule(Name=name)["ScheduleExpression"] == "rate(1 minute)"

    first = _rule(live, name).next_fire_at
    assert first is not None
    assert before + timedelta(seconds=59) <= first <= datetime.now(UTC) + timedelta(minutes=1)

    assert fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=first) >= 1
    (event,) = _events_of(live, name)
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert event["resources"] == [arn]
    assert event["time"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    with live.session() as session:
        (delivery,) = session.scalars(
            select(Delivery).where(Delivery.event_id == event["id"])
        ).all()
        assert (delivery.rule_name, delivery.target_arn) == (name, LOG)
    assert any(delivery.id in ids for ids in live.recorder.enqueued)  # enqueued after commit
    assert all(live.recorder.enqueued_committed)
    assert _rule(live, name).next_fire_at == first + timedelta(minutes=1)

    # the same instant again: nothing more to fire
    fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=first)
    assert len(_events_of(live, name)) == 1


def test_a_tick_missed_by_a_restart_still_fires_once(live: Live, events: Any, uid: str) -> None:
    name = f"restart-{uid}"
    events.put_rule(Name=name, ScheduleExpression="cron(0/5 * * * ? *)")
    _set_tick(live, name, datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    # the scheduler restarted from 09:59:50 to 10:00:40: the 10:00 tick is 40 s late
    now = datetime(2026, 1, 1, 10, 0, 40, tzinfo=UTC)
    fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=now)
    fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=now)
    assert [e["time"] for e in _events_of(live, name)] == ["2026-01-01T10:00:00Z"]
    assert _rule(live, name).next_fire_at == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)


def test_ticks_missed_by_an_outage_are_not_backfilled(live: Live, events: Any, uid: str) -> None:
    name = f"downtime-{uid}"
    events.put_rule(Name=name, ScheduleExpression="cron(0/5 * * * ? *)")
    _set_tick(live, name, datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    # the scheduler was down from 10:00 to 10:17:30: 10:00..10:15 are due, the latest 150 s late
    now = datetime(2026, 1, 1, 10, 17, 30, tzinfo=UTC)
    fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=now)
    assert _events_of(live, name) == []  # as AWS: nothing is put for an outage
    assert _rule(live, name).next_fire_at == datetime(2026, 1, 1, 10, 20, tzinfo=UTC)
    # counting resumed: the next tick fires on time
    later = datetime(2026, 1, 1, 10, 20, 0, 300_000, tzinfo=UTC)
    fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=later)
    assert [e["time"] for e in _events_of(live, name)] == ["2026-01-01T10:20:00Z"]


def test_a_disabled_rule_does_not_fire_and_reenabling_does_not_backfill(
    live: Live, events: Any, uid: str
) -> None:
    name = f"paused-{uid}"
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)", State="DISABLED")
    assert _rule(live, name).next_fire_at is None
    events.enable_rule(Name=name)
    enabled_at = datetime.now(UTC)
    tick = _rule(live, name).next_fire_at
    assert tick is not None
    assert tick > enabled_at
    events.disable_rule(Name=name)
    assert _rule(live, name).next_fire_at is None
    fire_due(
        get_database(live.settings.sqlalchemy_url),
        live.settings,
        now=enabled_at + timedelta(minutes=5),
    )
    assert _events_of(live, name) == []


def _fire_in_another_process(settings: Settings, start: Any, now: datetime, out: Any) -> None:
    start.wait(30)
    out.put(fire_due(get_database(settings.sqlalchemy_url), settings, now=now))


def test_two_firers_fire_each_tick_exactly_once(live: Live, events: Any, uid: str) -> None:
    """Two firer processes (as two schedulers during a takeover) race for the same due ticks:
    each tick becomes one event."""
    if not live.settings.sqlalchemy_url.startswith("postgresql"):
        pytest.skip("two processes writing at once: PostgreSQL (SQLite has one writer)")
    names = [f"race-{uid}-{i}" for i in range(20)]
    for name in names:
        events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    base = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    for name in names:
        _set_tick(live, name, base)
    context = multiprocessing.get_context("spawn")
    for round_ in range(2):
        now = base + timedelta(minutes=round_, seconds=1)
        start, out = context.Event(), context.Queue()
        workers = [
            context.Process(target=_fire_in_another_process, args=(live.settings, start, now, out))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        start.set()
        counts = [out.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert sum(counts) == len(names), counts  # together they fired each rule once
    for name in names:
        assert [e["time"] for e in _events_of(live, name)] == [
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:01:00Z",
        ]
