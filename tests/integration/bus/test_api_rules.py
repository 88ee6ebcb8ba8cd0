"""Event buses, rules and targets through boto3: AWS's response shapes, paging and errors, and the
viewer key's read-only access."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.bus.conftest import ACCOUNT, REGION

pytestmark = pytest.mark.integration

LOG = "arn:smokehouse:handler:log"
ECHO = "arn:smokehouse:handler:echo"


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_event_bus_lifecycle(events: Any, uid: str) -> None:
    name = f"bus-{uid}"
    arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"
    created = events.create_event_bus(Name=name, Description="orders")
    assert (created["EventBusArn"], created["Description"]) == (arn, "orders")

    for key in (name, arn):  # Name accepts a name or an ARN
        described = events.describe_event_bus(Name=key)
        assert (described["Name"], described["Arn"], described["Description"]) == (
            name,
            arn,
            "orders",
        )
        assert isinstance(described["CreationTime"], datetime)
        assert isinstance(described["LastModifiedTime"], datetime)
    assert events.describe_event_bus()["Name"] == "default"

    listed = events.list_event_buses(NamePrefix=name)["EventBuses"]
    assert [(b["Name"], b["Arn"]) for b in listed] == [(name, arn)]

    with pytest.raises(events.exceptions.ResourceAlreadyExistsException) as caught:
        events.create_event_bus(Name=name)
    assert error(caught)[1] == f"Event bus {name} already exists."

    events.delete_event_bus(Name=name)
    events.delete_event_bus(Name=name)  # deleting what is gone succeeds, as on AWS
    with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
        events.describe_event_bus(Name=name)
    assert error(caught)[1] == f"Event bus {name} does not exist."
    with pytest.raises(ClientError) as invalid:
        events.delete_event_bus(Name="default")
    assert error(invalid) == ("ValidationException", "Cannot delete event bus default.")


def test_rule_lifecycle_on_a_custom_bus(events: Any, uid: str) -> None:
    bus = f"rules-{uid}"
    events.create_event_bus(Name=bus)
    pattern = json.dumps({"source": ["orders"]})
    arn = events.put_rule(
        Name="r1", EventBusName=bus, EventPattern=pattern, Description="d", State="DISABLED"
    )["RuleArn"]
    assert arn == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/r1"

    described = events.describe_rule(Name="r1", EventBusName=bus)
    described.pop("ResponseMetadata")
    assert described == {
        "Name": "r1",
        "Arn": arn,
        "EventPattern": pattern,
        "State": "DISABLED",
        "Description": "d",
        "EventBusName": bus,
        "CreatedBy": ACCOUNT,
    }
    events.enable_rule(Name="r1", EventBusName=bus)
    assert events.describe_rule(Name="r1", EventBusName=bus)["State"] == "ENABLED"
    events.disable_rule(
        Name="r1", EventBusName=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"
    )
    assert events.describe_rule(Name="r1", EventBusName=bus)["State"] == "DISABLED"

    with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
        events.describe_rule(Name="r1")  # the default bus has no such rule
    assert error(caught)[1] == "Rule r1 does not exist on EventBus default."
    with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
        events.put_rule(Name="r1", EventBusName=f"nope-{uid}", EventPattern=pattern)
    assert error(caught)[1] == f"Event bus nope-{uid} does not exist."

    events.delete_rule(Name="r1", EventBusName=bus)
    events.delete_rule(Name="r1", EventBusName=bus)  # idempotent, as on AWS
    assert events.list_rules(EventBusName=bus)["Rules"] == []


def test_list_rules_pages_with_limit_and_next_token(events: Any, uid: str) -> None:
    bus = f"paging-{uid}"
    events.create_event_bus(Name=bus)
    names = [f"rule-{i}" for i in range(5)]
    for name in reversed(names):
        events.put_rule(Name=name, EventBusName=bus, EventPattern='{"source": ["x"]}')

    seen, token, pages = [], None, 0
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = events.list_rules(EventBusName=bus, Limit=2, **kwargs)
        pages += 1
        assert len(page["Rules"]) <= 2
        seen += [rule["Name"] for rule in page["Rules"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert (seen, pages) == (names, 3)
    rule = events.list_rules(EventBusName=bus, NamePrefix="rule-3")["Rules"][0]
    assert rule == {
        "Name": "rule-3",
        "Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/rule-3",
        "EventPattern": '{"source": ["x"]}',
        "State": "ENABLED",
        "EventBusName": bus,
    }
    paginated = events.get_paginator("list_rules").paginate(
        EventBusName=bus, PaginationConfig={"PageSize": 2}
    )
    assert [r["Name"] for page in paginated for r in page["Rules"]] == names


def test_targets_put_list_page_and_remove(events: Any, uid: str) -> None:
    rule = f"targets-{uid}"
    events.put_rule(Name=rule, EventPattern='{"source": ["x"]}')
    targets = [
        {"Id": "a", "Arn": LOG},
        {"Id": "b", "Arn": ECHO, "Input": '{"fixed": true}'},
        {
            "Id": "c",
            "Arn": LOG,
            "InputTransformer": {"InputPathsMap": {"s": "$.source"}, "InputTemplate": '{"s": <s>}'},
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
        },
    ]
    answer = events.put_targets(Rule=rule, Targets=targets)
    assert (answer["FailedEntryCount"], answer["FailedEntries"]) == (0, [])

    first = events.list_targets_by_rule(Rule=rule, Limit=2)
    second = events.list_targets_by_rule(Rule=rule, Limit=2, NextToken=first["NextToken"])
    assert first["Targets"] + second["Targets"] == targets  # round-trips exactly
    assert "NextToken" not in second

    bad = events.put_targets(
        Rule=rule,
        Targets=[
            {"Id": "d", "Arn": "arn:smokehouse:handler:no-such-handler"},
            {"Id": "e", "Arn": LOG, "Input": "not json"},
            {"Id": "a", "Arn": ECHO},  # replaces target a
        ],
    )
    assert bad["FailedEntryCount"] == 2
    assert [(f["TargetId"], f["ErrorCode"]) for f in bad["FailedEntries"]] == [
        ("d", "ValidationException"),
        ("e", "ValidationException"),
    ]
    listed = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert [(t["Id"], t["Arn"]) for t in listed] == [("a", ECHO), ("b", ECHO), ("c", LOG)]

    with pytest.raises(ClientError) as caught:
        events.delete_rule(Name=rule)
    assert error(caught) == ("ValidationException", "Rule can't be deleted since it has targets.")

    removed = events.remove_targets(Rule=rule, Ids=["b", "zz"])
    assert removed["FailedEntryCount"] == 1
    assert removed["FailedEntries"][0]["TargetId"] == "zz"
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] == ["a", "c"]

    events.delete_rule(Name=rule, Force=True)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.list_targets_by_rule(Rule=rule)


def test_server_checks_constraints_botocore_leaves_to_it(raw_events: Any, uid: str) -> None:
    """botocore checks types and required members; patterns, enums and maxima are the server's,
    reported in AWS's "N validation errors detected" form."""
    with pytest.raises(ClientError) as caught:
        raw_events.put_rule(Name="no spaces!", EventPattern="{}", State="SOMETIMES")
    assert error(caught) == (
        "ValidationException",
        "2 validation errors detected: "
        "Value 'no spaces!' at 'name' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; "
        "Value 'SOMETIMES' at 'state' failed to satisfy constraint: Member must satisfy enum "
        "value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]",
    )
    with pytest.raises(ClientError) as caught:
        raw_events.list_rules(Limit=101)
    assert error(caught) == (
        "ValidationException",
        "1 validation error detected: Value '101' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 100",
    )
    with pytest.raises(ClientError) as caught:
        raw_events.describe_rule()
    assert error(caught) == (
        "ValidationException",
        "1 validation error detected: Value null at 'name' failed to satisfy constraint: "
        "Member must not be null",
    )
    with pytest.raises(ClientError) as caught:
        raw_events.put_rule(Name=f"r-{uid}", EventPattern=5)
    assert error(caught)[0] == "SerializationException"


WRITES: list[tuple[str, dict[str, Any]]] = [
    ("put_rule", {"Name": "v", "EventPattern": '{"source": ["x"]}'}),
    ("delete_rule", {"Name": "v"}),
    ("enable_rule", {"Name": "v"}),
    ("put_targets", {"Rule": "v", "Targets": [{"Id": "a", "Arn": LOG}]}),
    ("remove_targets", {"Rule": "v", "Ids": ["a"]}),
    ("create_event_bus", {"Name": "v"}),
    ("delete_event_bus", {"Name": "v"}),
    ("put_events", {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}),
    (
        "create_archive",
        {
            "ArchiveName": "v",
            "EventSourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
        },
    ),
    ("delete_archive", {"ArchiveName": "v"}),
    ("cancel_replay", {"ReplayName": "v"}),
    (
        "create_connection",
        {
            "Name": "v",
            "AuthorizationType": "API_KEY",
            "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "v"}},
        },
    ),
    ("delete_connection", {"Name": "v"}),
    ("delete_api_destination", {"Name": "v"}),
]


def test_viewer_reads_but_cannot_write(viewer: Any, events: Any, uid: str) -> None:
    events.put_rule(Name=f"seen-{uid}", EventPattern='{"source": ["x"]}')
    assert viewer.describe_rule(Name=f"seen-{uid}")["Name"] == f"seen-{uid}"
    assert viewer.list_rules(NamePrefix=f"seen-{uid}")["Rules"]
    assert viewer.list_event_buses()["EventBuses"]
    assert viewer.list_archives(NamePrefix="x")["Archives"] is not None
    assert viewer.list_connections()["Connections"] is not None
    assert viewer.test_event_pattern(
        EventPattern='{"source": ["x"]}',
        Event=json.dumps(
            {
                "id": "1",
                "account": ACCOUNT,
                "source": "x",
                "time": "2024-01-01T00:00:00Z",
                "region": REGION,
                "detail-type": "t",
                "detail": {},
            }
        ),
    )["Result"]
    for operation, kwargs in WRITES:
        with pytest.raises(ClientError) as caught:
            getattr(viewer, operation)(**kwargs)
        code, message = error(caught)
        assert code == "AccessDeniedException", operation
        assert "AKRO" in message, message
        assert "viewer" in message, message
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name="v")  # nothing the viewer tried happened
