"""Archives and replays through boto3: shapes, counts, and EventBridge's errors.

Messages are the ones LocalStack's and moto's suites record from AWS ("Archive X already exists.",
"Parameter EventSourceArn is not valid. Reason: Archive X does not exist.", "Parameter
Destination.Arn is not valid. Reason: Cross event bus replay is not permitted.", "Parameter
EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.", ...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.bus.models import Replay
from tests.integration.bus.conftest import ACCOUNT, REGION, Live

pytestmark = pytest.mark.integration


def arn(resource: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:{resource}"


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def put(events: Any, bus: str, *sources: str) -> None:
    answer = events.put_events(
        Entries=[
            {"Source": s, "DetailType": "t", "Detail": '{"k": "v"}', "EventBusName": bus}
            for s in sources
        ]
    )
    assert answer["FailedEntryCount"] == 0


def test_archive_lifecycle_and_counts(events: Any, uid: str) -> None:
    bus, name = f"arch-{uid}", f"a-{uid}"
    events.create_event_bus(Name=bus)
    pattern = json.dumps({"source": ["keep"]})
    created = events.create_archive(
        ArchiveName=name,
        EventSourceArn=arn(f"event-bus/{bus}"),
        Description="kept",
        EventPattern=pattern,
        RetentionDays=7,
    )
    assert (created["ArchiveArn"], created["State"]) == (arn(f"archive/{name}"), "ENABLED")
    assert isinstance(created["CreationTime"], datetime)

    put(events, bus, "keep", "drop", "keep")
    described = events.describe_archive(ArchiveName=name)
    described.pop("ResponseMetadata")
    assert described.pop("SizeBytes") > 0
    assert isinstance(described.pop("CreationTime"), datetime)
    assert described == {
        "ArchiveArn": arn(f"archive/{name}"),
        "ArchiveName": name,
        "EventSourceArn": arn(f"event-bus/{bus}"),
        "Description": "kept",
        "EventPattern": pattern,
        "State": "ENABLED",
        "RetentionDays": 7,
        "EventCount": 2,
    }
    for listed in (
        events.list_archives(NamePrefix=name)["Archives"],
        events.list_archives(EventSourceArn=arn(f"event-bus/{bus}"))["Archives"],
    ):
        assert [(a["ArchiveName"], a["EventCount"], a["State"]) for a in listed] == [
            (name, 2, "ENABLED")
        ]
    enabled = events.list_archives(State="ENABLED", Limit=100)["Archives"]
    assert name in {a["ArchiveName"] for a in enabled}
    assert name not in {
        a["ArchiveName"] for a in events.list_archives(State="DISABLED")["Archives"]
    }

    # The archive's filter is part of the bus's compiled matcher: a change applies at once.
    updated = events.update_archive(
        ArchiveName=name, EventPattern=json.dumps({"source": ["drop"]}), Description="new"
    )
    assert (updated["ArchiveArn"], updated["State"]) == (arn(f"archive/{name}"), "ENABLED")
    put(events, bus, "drop", "drop", "keep")
    assert events.describe_archive(ArchiveName=name)["EventCount"] == 4
    assert events.describe_archive(ArchiveName=name)["Description"] == "new"

    events.delete_archive(ArchiveName=name)
    put(events, bus, "drop")  # archiving stops with the archive
    for call in (events.describe_archive, events.delete_archive):
        with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
            call(ArchiveName=name)
        assert error(caught)[1] == f"Archive {name} does not exist."


def test_archive_errors(events: Any, raw_events: Any, uid: str) -> None:
    name = f"e-{uid}"
    events.create_event_bus(Name=f"errs-{uid}")
    source = arn(f"event-bus/errs-{uid}")
    events.create_archive(ArchiveName=name, EventSourceArn=source)
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException) as caught:
        events.create_archive(ArchiveName=name, EventSourceArn=source)
    assert error(caught)[1] == f"Archive {name} already exists."

    with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
        events.create_archive(ArchiveName=f"x-{uid}", EventSourceArn=arn(f"event-bus/no-{uid}"))
    assert error(caught)[1] == f"Event bus no-{uid} does not exist."
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.list_archives(EventSourceArn=arn(f"event-bus/no-{uid}"))

    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.create_archive(
            ArchiveName=f"p-{uid}", EventSourceArn=source, EventPattern='{"source": "x"}'
        )
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_archive(ArchiveName=f"p-{uid}")  # nothing was stored

    with pytest.raises(ClientError) as caught:
        events.create_archive(ArchiveName=f"r-{uid}", EventSourceArn=arn("rule/not-a-bus"))
    assert error(caught) == (
        "ValidationException",
        "Parameter EventSourceArn is not valid. Reason: Must contain an event bus ARN.",
    )
    with pytest.raises(ClientError) as caught:
        raw_events.create_archive(ArchiveName="a" * 49, EventSourceArn="nope")
    assert error(caught)[1].startswith("2 validation errors detected: ")
    assert (
        "at 'archiveName' failed to satisfy constraint: "
        "Member must have length less than or equal to 48" in error(caught)[1]
    )
    with pytest.raises(ClientError) as caught:
        events.list_archives(NamePrefix="e", State="ENABLED")
    assert error(caught) == (
        "ValidationException",
        "At most one filter is allowed for ListArchives. "
        "Use either : State, EventSourceArn, or NamePrefix.",
    )
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.update_archive(ArchiveName=f"gone-{uid}", Description="x")


@pytest.fixture
def archived(events: Any, uid: str) -> dict[str, str]:
    """A bus with a rule and an archive holding one event."""
    bus, archive = f"rp-{uid}", f"rp-{uid}"
    events.create_event_bus(Name=bus)
    events.put_rule(Name="r", EventBusName=bus, EventPattern='{"source": ["s"]}')
    events.create_archive(ArchiveName=archive, EventSourceArn=arn(f"event-bus/{bus}"))
    put(events, bus, "s")
    return {"bus": bus, "archive": archive}


def window() -> tuple[datetime, datetime]:
    end = datetime.now(UTC) - timedelta(seconds=1)
    return end - timedelta(hours=1), end


def test_replay_lifecycle(events: Any, live: Live, archived: dict[str, str], uid: str) -> None:
    start, end = window()
    name = f"replay-{uid}"
    bus_arn, rule_arn = arn(f"event-bus/{archived['bus']}"), arn(f"rule/{archived['bus']}/r")
    started = events.start_replay(
        ReplayName=name,
        Description="again",
        EventSourceArn=arn(f"archive/{archived['archive']}"),
        EventStartTime=start,
        EventEndTime=end,
        Destination={"Arn": bus_arn, "FilterArns": [rule_arn]},
    )
    assert (started["ReplayArn"], started["State"]) == (arn(f"replay/{name}"), "STARTING")
    assert isinstance(started["ReplayStartTime"], datetime)
    # the runner was started once, after the replay row was committed
    assert live.recorder.replays[-1] == name
    assert live.recorder.replay_committed[-1] is True

    described = events.describe_replay(ReplayName=name)
    assert described["ReplayName"] == name
    assert described["ReplayArn"] == arn(f"replay/{name}")
    assert described["Description"] == "again"
    assert described["State"] == "STARTING"
    assert described["EventSourceArn"] == arn(f"archive/{archived['archive']}")
    assert described["Destination"] == {"Arn": bus_arn, "FilterArns": [rule_arn]}
    assert abs(described["EventStartTime"] - start) < timedelta(milliseconds=1)
    assert abs(described["EventEndTime"] - end) < timedelta(milliseconds=1)
    assert "ReplayEndTime" not in described

    listed = events.list_replays(NamePrefix=name)["Replays"]
    assert [(r["ReplayName"], r["State"], r["EventSourceArn"]) for r in listed] == [
        (name, "STARTING", arn(f"archive/{archived['archive']}"))
    ]
    by_archive = events.list_replays(EventSourceArn=arn(f"archive/{archived['archive']}"))
    assert [r["ReplayName"] for r in by_archive["Replays"]] == [name]

    cancelled = events.cancel_replay(ReplayName=name)
    assert (cancelled["ReplayArn"], cancelled["State"]) == (arn(f"replay/{name}"), "CANCELLING")
    with pytest.raises(events.exceptions.IllegalStatusException) as caught:
        events.cancel_replay(ReplayName=name)
    assert error(caught)[1] == f"Replay {name} is not in a valid state for this operation."

    with pytest.raises(events.exceptions.ResourceAlreadyExistsException) as caught:
        events.start_replay(
            ReplayName=name,
            EventSourceArn=arn(f"archive/{archived['archive']}"),
            EventStartTime=start,
            EventEndTime=end,
            Destination={"Arn": bus_arn},
        )
    assert error(caught)[1] == f"Replay {name} already exists."
    for call in (events.describe_replay, events.cancel_replay):
        with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
            call(ReplayName=f"gone-{uid}")
        assert error(caught)[1] == f"Replay gone-{uid} does not exist."


def test_start_replay_errors(events: Any, archived: dict[str, str], uid: str) -> None:
    start, end = window()
    source = arn(f"archive/{archived['archive']}")
    bus_arn = arn(f"event-bus/{archived['bus']}")
    events.create_event_bus(Name=f"other-{uid}")
    events.put_rule(Name="elsewhere", EventBusName=f"other-{uid}", EventPattern='{"source": ["s"]}')
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"EventStartTime": end, "EventEndTime": start},
            "ValidationException",
            "Parameter EventEndTime is not valid. "
            "Reason: EventStartTime must be before EventEndTime.",
        ),
        (
            {"EventEndTime": datetime.now(UTC) + timedelta(hours=1)},
            "ValidationException",
            "Parameter EventEndTime is not valid. Reason: EventEndTime cannot be in the future.",
        ),
        (
            {"EventSourceArn": arn(f"archive/none-{uid}")},
            "ValidationException",
            f"Parameter EventSourceArn is not valid. Reason: Archive none-{uid} does not exist.",
        ),
        (
            {"Destination": {"Arn": arn(f"event-bus/other-{uid}")}},
            "ValidationException",
            "Parameter Destination.Arn is not valid. "
            "Reason: Cross event bus replay is not permitted.",
        ),
        (
            {"Destination": {"Arn": arn(f"event-bus/none-{uid}")}},
            "ResourceNotFoundException",
            f"Event bus none-{uid} does not exist.",
        ),
        (
            {"Destination": {"Arn": arn("rule/r")}},
            "ValidationException",
            "Parameter Destination.Arn is not valid. Reason: Must contain an event bus ARN.",
        ),
        (
            {"Destination": {"Arn": bus_arn, "FilterArns": [arn(f"rule/other-{uid}/elsewhere")]}},
            "ValidationException",
            "Parameter Destination.FilterArns is not valid. Reason: "
            f"{arn(f'rule/other-{uid}/elsewhere')} is not the ARN of a rule on event bus "
            f"{archived['bus']}.",
        ),
        (
            {"Destination": {"Arn": bus_arn, "FilterArns": [arn(f"rule/{archived['bus']}/no")]}},
            "ValidationException",
            "Parameter Destination.FilterArns is not valid. "
            f"Reason: Rule no does not exist on EventBus {archived['bus']}.",
        ),
    ]
    for number, (override, code, message) in enumerate(cases):
        request = {
            "ReplayName": f"bad-{number}-{uid}",
            "EventSourceArn": source,
            "EventStartTime": start,
            "EventEndTime": end,
            "Destination": {"Arn": bus_arn},
            **override,
        }
        with pytest.raises(ClientError) as caught:
            events.start_replay(**request)
        assert error(caught) == (code, message), override
    assert events.list_replays(NamePrefix="bad-")["Replays"] == []


def test_a_replay_whose_runner_cannot_start_is_failed(
    events: Any, live: Live, archived: dict[str, str], uid: str
) -> None:
    live.recorder.fail_replay_start = True
    start, end = window()
    answer = events.start_replay(
        ReplayName=f"nostart-{uid}",
        EventSourceArn=arn(f"archive/{archived['archive']}"),
        EventStartTime=start,
        EventEndTime=end,
        Destination={"Arn": arn(f"event-bus/{archived['bus']}")},
    )
    assert answer["State"] == "FAILED"
    assert "broker unreachable" in answer["StateReason"]
    with live.session() as session:
        replay = session.get(Replay, f"nostart-{uid}")
        assert replay is not None
        assert (replay.state, replay.replay_end_time is not None) == ("FAILED", True)
    assert events.describe_replay(ReplayName=f"nostart-{uid}")["State"] == "FAILED"
