"""EventBridge Scheduler through boto3 (``scheduler``, REST-JSON): every operation, AWS's errors
and statuses, the viewer key's read-only access, and a due schedule fired once to its target."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import select, update

from app.bus.delivery import deliver
from app.bus.models import Delivery, Event
from app.db import get_database
from app.schedules.firer import fire_due
from app.schedules.models import Schedule
from tests.integration.bus.conftest import ACCOUNT, ADMIN_SECRET, REGION, VIEWER_SECRET, Live

pytestmark = pytest.mark.integration

MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:nightly"
BUS = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
WINDOW_OFF = {"Mode": "OFF"}
BERLIN = ZoneInfo("Europe/Berlin")


def client(live: Live, key: str = "AKID", secret: str = ADMIN_SECRET) -> Any:
    return boto3.client(
        "scheduler",
        endpoint_url=live.url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_schedule_lifecycle_and_errors(live: Live, uid: str) -> None:
    scheduler = client(live)
    name = f"nightly-{uid}"
    arn = scheduler.create_schedule(
        Name=name,
        ScheduleExpression="cron(0 3 * * ? *)",
        ScheduleExpressionTimezone="Europe/Berlin",
        FlexibleTimeWindow=WINDOW_OFF,
        Target={
            "Arn": MACHINE,
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler",
            "Input": '{"full": true}',
            "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3},
        },
    )["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{name}"
    got = scheduler.get_schedule(Name=name)
    assert got["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert got["State"] == "ENABLED"
    assert got["Target"]["Input"] == '{"full": true}'
    assert got["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 3
    assert isinstance(got["CreationDate"], datetime)
    with live.session() as session:
        due = session.scalar(select(Schedule.next_fire_at).where(Schedule.name == name))
    assert due is not None
    assert due.astimezone(BERLIN).hour == 3

    with pytest.raises(scheduler.exceptions.ConflictException) as conflict:
        scheduler.create_schedule(
            Name=name,
            ScheduleExpression="rate(1 hour)",
            FlexibleTimeWindow=WINDOW_OFF,
            Target={"Arn": MACHINE, "RoleArn": "arn:aws:iam::000000000000:role/x"},
        )
    assert error(conflict) == ("ConflictException", 409)
    with pytest.raises(scheduler.exceptions.ValidationException) as bad:
        scheduler.create_schedule(
            Name=f"bad-{uid}",
            ScheduleExpression="rate(1 hours)",
            FlexibleTimeWindow=WINDOW_OFF,
            Target={"Arn": MACHINE, "RoleArn": "arn:aws:iam::000000000000:role/x"},
        )
    assert error(bad) == ("ValidationException", 400)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException) as missing:
        scheduler.get_schedule(Name=f"nope-{uid}")
    assert error(missing) == ("ResourceNotFoundException", 404)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=name, GroupName=f"nogroup-{uid}")

    scheduler.update_schedule(
        Name=name,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 2},
        State="DISABLED",
        Target={"Arn": MACHINE, "RoleArn": "arn:aws:iam::000000000000:role/x"},
    )
    got = scheduler.get_schedule(Name=name)
    assert (got["ScheduleExpression"], got["State"]) == ("rate(5 minutes)", "DISABLED")
    listed = scheduler.list_schedules(NamePrefix=name)["Schedules"]
    assert [(s["Name"], s["State"], s["Target"]["Arn"]) for s in listed] == [
        (name, "DISABLED", MACHINE)
    ]
    scheduler.delete_schedule(Name=name)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.delete_schedule(Name=name)


def test_a_resent_create_gets_the_first_answer(live: Live, uid: str) -> None:
    """botocore resends a create whose answer was lost with the same ``ClientToken``: the resend
    finds what the first made; another token for the same name is a conflict."""
    scheduler = client(live)
    target = {"Arn": BUS, "RoleArn": "arn:aws:iam::000000000000:role/x"}
    first = scheduler.create_schedule_group(Name=f"g-{uid}", ClientToken=f"group-{uid}")
    again = scheduler.create_schedule_group(Name=f"g-{uid}", ClientToken=f"group-{uid}")
    assert again["ScheduleGroupArn"] == first["ScheduleGroupArn"]
    create = {
        "Name": f"s-{uid}",
        "GroupName": f"g-{uid}",
        "ScheduleExpression": "rate(1 hour)",
        "FlexibleTimeWindow": WINDOW_OFF,
        "Target": target,
    }
    made = scheduler.create_schedule(**create, ClientToken=f"create-{uid}")
    resent = scheduler.create_schedule(**create, ClientToken=f"create-{uid}")
    assert resent["ScheduleArn"] == made["ScheduleArn"]
    assert len(scheduler.list_schedules(GroupName=f"g-{uid}")["Schedules"]) == 1
    for call, kwargs in (
        (scheduler.create_schedule, create),
        (scheduler.create_schedule_group, {"Name": f"g-{uid}"}),
    ):
        with pytest.raises(ClientError) as caught:
            call(**kwargs, ClientToken=f"other-{uid}")
        assert caught.value.response["Error"]["Code"] == "ConflictException"


def test_groups_and_tags(live: Live, uid: str) -> None:
    scheduler = client(live)
    name = f"group-{uid}"
    arn = scheduler.create_schedule_group(Name=name, Tags=[{"Key": "team", "Value": "bbq"}])[
        "ScheduleGroupArn"
    ]
    assert arn == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{name}"
    assert scheduler.get_schedule_group(Name=name)["State"] == "ACTIVE"
    assert scheduler.get_schedule_group(Name="default")["Name"] == "default"
    names = [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
    assert {"default", name} <= set(names)
    with pytest.raises(scheduler.exceptions.ConflictException):
        scheduler.create_schedule_group(Name=name)

    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == [
        {"Key": "team", "Value": "bbq"}
    ]
    scheduler.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "prod"}])
    scheduler.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == [
        {"Key": "env", "Value": "prod"}
    ]

    scheduler.create_schedule(
        Name="in-group",
        GroupName=name,
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow=WINDOW_OFF,
        Target={"Arn": MACHINE, "RoleArn": "arn:aws:iam::000000000000:role/x"},
    )
    assert [s["Name"] for s in scheduler.list_schedules(GroupName=name)["Schedules"]] == [
        "in-group"
    ]
    scheduler.delete_schedule_group(Name=name)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule_group(Name=name)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.list_tags_for_resource(ResourceArn=arn)
    with pytest.raises(scheduler.exceptions.ValidationException):
        scheduler.delete_schedule_group(Name="default")


def test_viewer_reads_but_cannot_write_and_strangers_are_refused(live: Live, uid: str) -> None:
    viewer = client(live, "AKRO", VIEWER_SECRET)
    viewer.list_schedules()
    with pytest.raises(ClientError) as denied:
        viewer.create_schedule_group(Name=f"v-{uid}")
    assert error(denied) == ("AccessDeniedException", 403)
    with pytest.raises(ClientError) as stranger:
        client(live, "AKID", "wrong-secret-0000000000000").list_schedules()
    assert stranger.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
    with pytest.raises(ClientError):
        client(live).get_schedule_group(Name=f"v-{uid}")


def test_a_due_schedule_fires_once_to_its_target(live: Live, uid: str) -> None:
    scheduler = client(live)
    name = f"once-{uid}"
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    scheduler.create_schedule(
        Name=name,
        ScheduleExpression=f"at({soon.strftime('%Y-%m-%dT%H:%M:%S')})",
        FlexibleTimeWindow=WINDOW_OFF,
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": BUS,
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "Input": '{"cook": "brisket"}',
            "EventBridgeParameters": {"DetailType": "Cook Due", "Source": "smokehouse.test"},
        },
    )
    with live.session() as session:
        tick = session.scalar(select(Schedule.next_fire_at).where(Schedule.name == name))
        assert tick == soon
    database = get_database(live.settings.sqlalchemy_url)
    later = soon + timedelta(seconds=1)  # the firer's clock, an hour on
    assert fire_due(database, live.settings, now=later) >= 1
    fire_due(database, live.settings, now=later)  # nothing left: fired once
    arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{name}"
    with live.session() as session:
        events = [
            e.envelope
            for e in session.scalars(select(Event).where(Event.source == "smokehouse.test"))
            if e.envelope["resources"] == [arn]
        ]
        assert len(events) == 1
        assert events[0]["detail-type"] == "Cook Due"
        assert events[0]["detail"] == {"cook": "brisket"}
        (delivery,) = session.scalars(
            select(Delivery).where(Delivery.event_id == events[0]["id"])
        ).all()
        assert delivery.target_arn == BUS
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=name)  # ActionAfterCompletion DELETE


def _fire_schedules_elsewhere(settings: Any, start: Any, now: datetime, out: Any) -> None:
    start.wait(30)
    out.put(fire_due(get_database(settings.sqlalchemy_url), settings, now=now))


def test_a_recurring_fire_missed_by_an_outage_is_skipped_a_late_one_time_fire_is_not(
    live: Live, uid: str
) -> None:
    scheduler = client(live)
    target = {
        "Arn": BUS,
        "RoleArn": "arn:aws:iam::000000000000:role/x",
        "EventBridgeParameters": {"DetailType": "Missed", "Source": "smokehouse.test"},
    }
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    for name, expression in (
        (f"every-{uid}", "rate(5 minutes)"),
        (f"at-{uid}", f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})"),
    ):
        scheduler.create_schedule(
            Name=name, ScheduleExpression=expression, FlexibleTimeWindow=WINDOW_OFF, Target=target
        )
    with live.session() as session:
        due = dict(session.execute(select(Schedule.name, Schedule.next_fire_at)).all())
    # the scheduler comes back 10 minutes after both were due
    now = max(due[f"every-{uid}"], due[f"at-{uid}"]) + timedelta(minutes=10)
    fire_due(get_database(live.settings.sqlalchemy_url), live.settings, now=now)
    with live.session() as session:
        fired = {
            e.envelope["resources"][0].rsplit("/", 1)[1]
            for e in session.scalars(select(Event).where(Event.detail_type == "Missed"))
        }
        after = dict(session.execute(select(Schedule.name, Schedule.next_fire_at)).all())
    assert fired == {f"at-{uid}"}  # the one-time fire, however late; the recurring one skipped
    assert after[f"every-{uid}"] is not None
    assert after[f"every-{uid}"] > now  # counting resumed from now


def test_two_firers_fire_each_schedule_once(live: Live, uid: str) -> None:
    """Two firer processes race for the same due fires (PostgreSQL): each fire is one event."""
    if not live.settings.sqlalchemy_url.startswith("postgresql"):
        pytest.skip("two processes writing at once: PostgreSQL (SQLite has one writer)")
    scheduler = client(live)
    names = [f"race-{uid}-{i}" for i in range(15)]
    for name in names:
        scheduler.create_schedule(
            Name=name,
            ScheduleExpression="rate(1 minute)",
            FlexibleTimeWindow=WINDOW_OFF,
            Target={
                "Arn": BUS,
                "RoleArn": "arn:aws:iam::000000000000:role/x",
                "EventBridgeParameters": {"DetailType": "Race", "Source": f"race.{uid}"},
            },
        )
    with live.session() as session:
        due = max(
            session.scalars(select(Schedule.next_fire_at).where(Schedule.name.in_(names))).all()
        )
    context = multiprocessing.get_context("spawn")
    for round_ in range(2):
        now = due + timedelta(minutes=round_, seconds=1)
        start, out = context.Event(), context.Queue()
        workers = [
            context.Process(target=_fire_schedules_elsewhere, args=(live.settings, start, now, out))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        start.set()
        counts = [out.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert sum(counts) == len(names), counts
    with live.session() as session:
        events = session.scalars(select(Event).where(Event.source == f"race.{uid}")).all()
        per_schedule: dict[str, int] = {}
        for event in events:
            key = event.envelope["resources"][0]
            per_schedule[key] = per_schedule.get(key, 0) + 1
    assert len(per_schedule) == len(names)
    assert set(per_schedule.values()) == {2}  # two rounds, once each


def test_a_schedule_sends_its_input_to_an_sqs_queue(live: Live, uid: str) -> None:
    """The SQS target comes from the bus's target registry (``arn:aws:sqs:…``); the fire's
    delivery, run as a worker runs it, sends the schedule's Input as the message body."""
    sqs = boto3.client(
        "sqs",
        endpoint_url=live.url,
        region_name=REGION,
        aws_access_key_id="AKID",
        aws_secret_access_key=ADMIN_SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    queue_url = sqs.create_queue(QueueName=f"ticks-{uid}")["QueueUrl"]
    dead = sqs.create_queue(QueueName=f"ticks-dlq-{uid}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    scheduler = client(live)
    name = f"to-sqs-{uid}"
    scheduler.create_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=WINDOW_OFF,
        Target={
            "Arn": queue_arn,
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "Input": '{"probe": 1}',
            "DeadLetterConfig": {"Arn": dead_arn},
        },
    )
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)  # brought forward
    with live.session() as session:
        session.execute(update(Schedule).where(Schedule.name == name).values(next_fire_at=due))
    database = get_database(live.settings.sqlalchemy_url)
    assert fire_due(database, live.settings) >= 1
    with live.session() as session:
        (delivery_id,) = session.scalars(
            select(Delivery.id).where(Delivery.rule_name == f"schedule/default/{name}")
        ).all()
    assert deliver(live.settings, delivery_id) == "succeeded"
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in messages] == ['{"probe": 1}']


def test_a_fire_that_fails_for_good_goes_to_its_dead_letter_queue(live: Live, uid: str) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=live.url,
        region_name=REGION,
        aws_access_key_id="AKID",
        aws_secret_access_key=ADMIN_SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    dead = sqs.create_queue(QueueName=f"fires-dlq-{uid}")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    scheduler = client(live)
    name = f"broken-{uid}"
    scheduler.create_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=WINDOW_OFF,
        Target={
            "Arn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:missing-{uid}",
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "Input": '{"probe": 2}',
            "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
            "DeadLetterConfig": {"Arn": dead_arn},
        },
    )
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    with live.session() as session:
        session.execute(update(Schedule).where(Schedule.name == name).values(next_fire_at=due))
    assert fire_due(get_database(live.settings.sqlalchemy_url), live.settings) >= 1
    rule_name = f"schedule/default/{name}"
    with live.session() as session:
        (first,) = session.scalars(select(Delivery.id).where(Delivery.rule_name == rule_name))
    assert deliver(live.settings, first) == "failed"
    with live.session() as session:
        (to_queue,) = session.scalars(
            select(Delivery).where(Delivery.rule_name == rule_name, Delivery.target_arn == dead_arn)
        )
        to_queue_id = to_queue.id
    assert any(to_queue_id in ids for ids in live.recorder.enqueued)  # sent after the commit
    assert deliver(live.settings, to_queue_id) == "succeeded"
    messages = sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in messages] == ['{"probe": 2}']
