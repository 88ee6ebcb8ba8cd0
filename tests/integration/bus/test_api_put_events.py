"""PutEvents through boto3: limits, EventBridge's per-entry errors, and what ends up in the
database (events, deliveries) and on the queue (after the commit).

Per-entry error codes and messages are EventBridge's: ``InvalidArgument`` "Parameter Source is
not valid. Reason: Source is a required argument." (likewise DetailType, Detail) and
``MalformedDetail`` "Detail is malformed." as recorded from AWS by moto and LocalStack and seen in
real responses (baselime/lambda-node-opentelemetry#1); the request-level messages are the
ValidationExceptions AWS sends for more than 10 entries and for more than 256 KB
(awslabs/aws-service-catalog-puppet#563).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.bus.models import Delivery, Event
from tests.integration.bus.conftest import ACCOUNT, REGION, Live

pytestmark = pytest.mark.integration

LOG = "arn:smokehouse:handler:log"


def entry(**fields: Any) -> dict[str, Any]:
    return {"Source": "shop", "DetailType": "order", "Detail": '{"n": 1}', **fields}


def test_good_entries_are_accepted_next_to_bad_ones(events: Any, live: Live, uid: str) -> None:
    bus = f"mixed-{uid}"
    events.create_event_bus(Name=bus)
    batch = [
        entry(EventBusName=bus),
        {"DetailType": "order", "Detail": "{}", "EventBusName": bus},
        {"Source": "shop", "Detail": "{}", "EventBusName": bus},
        {"Source": "shop", "DetailType": "order", "EventBusName": bus},
        entry(Detail="{not json", EventBusName=bus),
        entry(Detail="[1, 2]", EventBusName=bus),  # valid JSON, but Detail must be an object
        entry(EventBusName=f"nope-{uid}"),
        entry(EventBusName=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"),
    ]
    answer = events.put_events(Entries=batch)
    results = answer["Entries"]
    assert len(results) == len(batch)
    assert answer["FailedEntryCount"] == 6
    assert [r.get("ErrorCode") for r in results] == [
        None,
        "InvalidArgument",
        "InvalidArgument",
        "InvalidArgument",
        "MalformedDetail",
        "MalformedDetail",
        results[6]["ErrorCode"],  # see below
        None,
    ]
    assert [r.get("ErrorMessage") for r in results[1:6]] == [
        "Parameter Source is not valid. Reason: Source is a required argument.",
        "Parameter DetailType is not valid. Reason: DetailType is a required argument.",
        "Parameter Detail is not valid. Reason: Detail is a required argument.",
        "Detail is malformed.",
        "Detail is malformed.",
    ]
    # EventBridge itself accepts events for a bus that does not exist and drops them; smokehouse
    # says so instead (a deliberate difference: bad input gets a clear error).
    assert "EventId" not in results[6]
    assert results[6]["ErrorMessage"] == f"Event bus nope-{uid} does not exist."
    accepted = [results[0]["EventId"], results[7]["EventId"]]
    with live.session() as session:
        stored = session.scalars(select(Event.id).where(Event.bus_name == bus)).all()
    assert sorted(stored) == sorted(accepted)


def test_events_are_stored_and_deliveries_enqueued_after_commit(
    events: Any, live: Live, uid: str
) -> None:
    bus = f"route-{uid}"
    events.create_event_bus(Name=bus)
    events.put_rule(Name="orders", EventBusName=bus, EventPattern='{"source": ["shop"]}')
    events.put_targets(
        Rule="orders",
        EventBusName=bus,
        Targets=[{"Id": "one", "Arn": LOG}, {"Id": "two", "Arn": LOG}],
    )
    before = len(live.recorder.enqueued)
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    answer = events.put_events(
        Entries=[
            entry(EventBusName=bus, Time=when, Resources=["arn:aws:s3:::bucket"]),
            entry(EventBusName=bus),
            entry(EventBusName=bus, Source="elsewhere"),
        ]
    )
    assert answer["FailedEntryCount"] == 0
    ids = [e["EventId"] for e in answer["Entries"]]
    with live.session() as session:
        stored = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_(ids)))}
        deliveries = session.scalars(select(Delivery).where(Delivery.event_id.in_(ids))).all()
        envelope = stored[ids[0]].envelope
        pairs = sorted((d.event_id, d.target_id, d.status) for d in deliveries)
        delivery_ids = sorted(d.id for d in deliveries)
    assert set(stored) == set(ids)
    assert envelope == {
        "version": "0",
        "id": ids[0],
        "detail-type": "order",
        "source": "shop",
        "account": ACCOUNT,
        "time": "2024-05-01T12:30:00Z",
        "region": REGION,
        "resources": ["arn:aws:s3:::bucket"],
        "detail": {"n": 1},
    }
    assert pairs == sorted(
        (event_id, target, "pending") for event_id in ids[:2] for target in ("one", "two")
    )
    # one hand-off for the request, with every new delivery, each already committed
    assert live.recorder.enqueued[before:] == [live.recorder.enqueued[-1]]
    assert sorted(live.recorder.enqueued[-1]) == delivery_ids
    assert live.recorder.enqueued_committed[-1] is True


def test_nothing_is_enqueued_when_nothing_matched(events: Any, live: Live, uid: str) -> None:
    before = len(live.recorder.enqueued)
    events.put_events(Entries=[entry(Source=f"unrouted-{uid}")])
    assert len(live.recorder.enqueued) == before


def test_a_failing_enqueue_does_not_fail_the_request(
    events: Any, live: Live, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deliveries are committed: the outbox sweeper sends them later."""
    bus = f"broker-down-{uid}"
    events.create_event_bus(Name=bus)
    events.put_rule(Name="all", EventBusName=bus, EventPattern='{"source": ["shop"]}')
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "t", "Arn": LOG}])

    def broken(settings: Any, delivery_ids: list[str], countdown: Any = None) -> None:
        raise ConnectionError("broker unreachable")

    from app.bus import outbox

    monkeypatch.setattr(outbox, "enqueue_deliveries", broken)
    answer = events.put_events(Entries=[entry(EventBusName=bus)])
    assert answer["FailedEntryCount"] == 0
    with live.session() as session:
        pending = session.scalars(
            select(Delivery.status).where(Delivery.event_id == answer["Entries"][0]["EventId"])
        ).all()
    assert pending == ["pending"]


def test_request_limits(events: Any, raw_events: Any) -> None:
    with pytest.raises(ClientError) as caught:
        events.put_events(Entries=[entry() for _ in range(11)])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"].endswith(
        "at 'entries' failed to satisfy constraint: "
        "Member must have length less than or equal to 10"
    )
    with pytest.raises(ClientError) as caught:
        raw_events.put_events(Entries=[])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"].endswith(
        "Member must have length greater than or equal to 1"
    )

    # 256 KB counts Source + DetailType + Detail + Resources (UTF-8): exactly at the limit is fine.
    padding = 256 * 1024 - len("shop") - len("order") - len('{"p": ""}')
    at_limit = entry(Detail='{"p": "' + "x" * padding + '"}')
    assert events.put_events(Entries=[at_limit])["FailedEntryCount"] == 0
    over = [entry(Detail='{"p": "' + "x" * (130 * 1024) + '"}') for _ in range(2)]
    with pytest.raises(ClientError) as caught:
        events.put_events(Entries=over)
    assert caught.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "Total size of the entries in the request is over the limit.",
    }


def test_a_recreated_bus_does_not_route_to_the_deleted_buses_rules(
    events: Any, live: Live, uid: str
) -> None:
    bus = f"again-{uid}"
    for rule in ("first", "second"):
        events.create_event_bus(Name=bus)
        events.put_rule(Name=rule, EventBusName=bus, EventPattern='{"source": ["shop"]}')
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "t", "Arn": LOG}])
        answer = events.put_events(Entries=[entry(EventBusName=bus)])
        with live.session() as session:
            routed = session.scalars(
                select(Delivery.rule_name).where(
                    Delivery.event_id == answer["Entries"][0]["EventId"]
                )
            ).all()
        assert routed == [rule]
        events.delete_rule(Name=rule, EventBusName=bus, Force=True)
        events.delete_event_bus(Name=bus)
