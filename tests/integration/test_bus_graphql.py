"""The bus over GraphQL, on SQLite and PostgreSQL: queries show what the services stored, only
admin keys mutate, redrive resets a dead delivery, and nested lists cost a bounded number of SQL
statements however many rules there are (dataloaders, no N+1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.bus.arns import Scope
from app.bus.events import put_events
from app.bus.models import DeadLetter, Delivery, DeliveryAttempt, Event
from app.bus.service import create_bus, put_rule, put_targets
from app.config import Settings
from app.db import get_database, utcnow
from tests.integration.graphql_client import data, gql
from tests.keys import VIEWER_SECRET

pytestmark = pytest.mark.integration

SCOPE = Scope("us-east-1", "000000000000")
ECHO = "arn:smokehouse:handler:echo"
LOG = "arn:smokehouse:handler:log"


def put(settings: Settings, source: str, detail: str = "{}") -> list[str]:
    with get_database(settings.sqlalchemy_url).session() as session:
        result = put_events(
            session, [{"Source": source, "DetailType": "t", "Detail": detail}], SCOPE
        )
    return [entry["EventId"] for entry in result.entries]


def shipped_rules(client: TestClient) -> int:
    rules = data(client, "{ rules { managedBy } }")["rules"]
    return sum((r["managedBy"] or "").startswith("definitions:app/") for r in rules)


def test_queries_return_what_the_services_stored(settings: Settings, client: TestClient) -> None:
    transformer = {"InputPathsMap": {"n": "$.detail.n"}, "InputTemplate": '{"n": <n>}'}
    with get_database(settings.sqlalchemy_url).session() as session:
        create_bus(session, "orders", "Order events")
        put_rule(
            session,
            name="r-a",
            event_pattern={"source": ["app.orders"]},
            description="orders",
            managed_by="definitions:x.yaml",
        )
        put_targets(
            session,
            None,
            "r-a",
            [
                {"Id": "echo", "Arn": ECHO, "InputTransformer": transformer},
                {"Id": "log", "Arn": LOG, "InputPath": "$.detail"},
            ],
        )
        put_rule(session, name="r-b", event_pattern={"source": ["other"]}, state="DISABLED")
    [first] = put(settings, "app.orders", '{"n": 1}')
    [second] = put(settings, "app.orders", '{"n": 2}')
    put(settings, "unrouted")
    with get_database(settings.sqlalchemy_url).session() as session:
        delivery = session.query(Delivery).filter_by(event_id=first, target_id="echo").one()
        now = utcnow()
        for number, outcome in ((1, "retry"), (2, "succeeded")):
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    number=number,
                    started_at=now,
                    finished_at=now,
                    outcome=outcome,
                    status_code=500 if outcome == "retry" else None,
                    error="HandlerError: boom" if outcome == "retry" else None,
                )
            )
        delivery.status, delivery.attempts = "succeeded", 2

    shipped = shipped_rules(client)
    assert shipped  # the seed's rules, applied at start-up
    buses = data(client, "{ buses { name description ruleCount } }")["buses"]
    assert buses == [
        {"name": "default", "description": "The default event bus", "ruleCount": 2 + shipped},
        {"name": "orders", "description": "Order events", "ruleCount": 0},
    ]

    rules = data(
        client,
        """{ rules { name bus state description eventPattern managedBy
                     targets { id arn input inputPath inputTransformer }
                     recentEvents(limit: 1) { id } } }""",
    )["rules"]
    rules = [r for r in rules if not (r["managedBy"] or "").startswith("definitions:app/")]
    assert rules == [
        {
            "name": "r-a",
            "bus": "default",
            "state": "ENABLED",
            "description": "orders",
            "eventPattern": {"source": ["app.orders"]},
            "managedBy": "definitions:x.yaml",
            "targets": [
                {
                    "id": "echo",
                    "arn": ECHO,
                    "input": None,
                    "inputPath": None,
                    "inputTransformer": transformer,
                },
                {
                    "id": "log",
                    "arn": LOG,
                    "input": None,
                    "inputPath": "$.detail",
                    "inputTransformer": None,
                },
            ],
            "recentEvents": [{"id": second}],
        },
        {
            "name": "r-b",
            "bus": "default",
            "state": "DISABLED",
            "description": None,
            "eventPattern": {"source": ["other"]},
            "managedBy": None,
            "targets": [],
            "recentEvents": [],
        },
    ]
    one = data(client, '{ rule(name: "r-b") { name } missing: rule(name: "nope") { name } }')
    assert one == {"rule": {"name": "r-b"}, "missing": None}
    unknown_bus = gql(client, '{ rules(bus: "nope") { name } }')
    assert "Event bus nope does not exist" in unknown_bus["errors"][0]["message"]

    events = data(
        client,
        """{ events(source: "app.orders") { id source detailType matchedRules envelope
               deliveries { targetId status attempts
                            attemptLog { number outcome statusCode error } } } }""",
    )["events"]
    assert [e["id"] for e in events] == [second, first]  # most recent first
    assert events[1]["envelope"]["detail"] == {"n": 1}
    assert events[1]["matchedRules"] == 1
    by_target = {d["targetId"]: d for d in events[1]["deliveries"]}
    assert by_target["echo"]["attemptLog"] == [
        {"number": 1, "outcome": "retry", "statusCode": 500, "error": "HandlerError: boom"},
        {"number": 2, "outcome": "succeeded", "statusCode": None, "error": None},
    ]
    assert by_target["log"] == {
        "targetId": "log",
        "status": "pending",
        "attempts": 0,
        "attemptLog": [],
    }
    assert len(data(client, "{ events(limit: 2) { id } }")["events"]) == 2

    pending = data(client, '{ deliveries(status: "pending") { eventId ruleName status } }')
    assert len(pending["deliveries"]) == 3
    assert {d["ruleName"] for d in pending["deliveries"]} == {"r-a"}
    succeeded = data(client, '{ deliveries(status: "succeeded") { id event { id } } }')
    assert succeeded["deliveries"] == [{"id": delivery.id, "event": {"id": first}}]


def test_viewers_read_and_only_admins_enable_or_disable(
    settings: Settings, client: TestClient
) -> None:
    with get_database(settings.sqlalchemy_url).session() as session:
        put_rule(session, name="r", event_pattern={"source": ["a"]})
    names = [r["name"] for r in data(client, "{ rules { name } }", key=VIEWER_SECRET)["rules"]]
    assert "r" in names

    disable = 'mutation { disableRule(name: "r") { name state } }'
    denied = gql(client, disable, key=VIEWER_SECRET)
    assert denied["errors"][0]["message"] == "This API key is read-only (role viewer)"
    assert data(client, '{ rule(name: "r") { state } }') == {"rule": {"state": "ENABLED"}}

    assert data(client, disable) == {"disableRule": {"name": "r", "state": "DISABLED"}}
    assert put(settings, "a")  # a disabled rule routes nothing
    assert data(client, "{ deliveries { id } }") == {"deliveries": []}
    enabled = data(client, 'mutation { enableRule(bus: "default", name: "r") { state } }')
    assert enabled == {"enableRule": {"state": "ENABLED"}}
    missing = gql(client, 'mutation { enableRule(name: "nope") { state } }')
    assert "Rule nope does not exist" in missing["errors"][0]["message"]


def test_redrive_resets_the_dead_delivery_and_enqueues_it(
    settings: Settings, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueued: list[list[str]] = []
    monkeypatch.setattr(
        "app.bus.outbox.enqueue_deliveries", lambda _settings, ids: enqueued.append(list(ids))
    )
    long_ago = utcnow() - timedelta(hours=1)
    with get_database(settings.sqlalchemy_url).session() as session:
        session.add(
            Event(
                id="e1",
                bus_name="default",
                source="s",
                detail_type="t",
                time=long_ago,
                envelope={"id": "e1"},
            )
        )
        session.flush()
        session.add(
            Delivery(
                id="d1",
                event_id="e1",
                bus_name="default",
                rule_id="rule-1",
                rule_name="r",
                target_id="t",
                target_arn=ECHO,
                target_spec={"Id": "t", "Arn": ECHO},
                status="dead",
                attempts=3,
                created_at=long_ago,
                next_attempt_at=long_ago,
                enqueued_at=long_ago,
                completed_at=long_ago,
                last_error="HandlerError: boom",
            )
        )
        session.flush()
        letter = DeadLetter(
            delivery_id="d1",
            event_id="e1",
            bus_name="default",
            rule_name="r",
            target_id="t",
            error_code="HandlerError",
            error_message="boom (retry attempts exhausted (2))",
            attempts=3,
            created_at=long_ago,
        )
        session.add(letter)
        session.flush()
        letter_id = letter.id

    listed = data(
        client,
        "{ deadLetters { id deliveryId eventId ruleName targetId errorCode attempts redrivenAt } }",
        key=VIEWER_SECRET,
    )
    assert listed["deadLetters"] == [
        {
            "id": letter_id,
            "deliveryId": "d1",
            "eventId": "e1",
            "ruleName": "r",
            "targetId": "t",
            "errorCode": "HandlerError",
            "attempts": 3,
            "redrivenAt": None,
        }
    ]
    redrive = "mutation ($id: Int!) { redriveDeadLetter(id: $id) { id status attempts } }"
    denied = gql(client, redrive, key=VIEWER_SECRET, id=letter_id)
    assert denied["errors"][0]["message"] == "This API key is read-only (role viewer)"
    assert enqueued == []

    redriven = data(client, redrive, id=letter_id)
    assert redriven == {"redriveDeadLetter": {"id": "d1", "status": "pending", "attempts": 0}}
    assert enqueued == [["d1"]]
    with get_database(settings.sqlalchemy_url).session() as session:
        delivery = session.get(Delivery, "d1")
        assert delivery is not None
        assert delivery.claimed_until is None
        assert delivery.completed_at is None
        assert delivery.next_attempt_at > long_ago
        assert delivery.enqueued_at is not None
        assert delivery.enqueued_at > long_ago

    assert data(client, "{ deadLetters { id } }") == {"deadLetters": []}
    shown = data(client, "{ deadLetters(includeRedriven: true) { redrivenAt delivery { id } } }")
    [only] = shown["deadLetters"]
    assert only["redrivenAt"] is not None
    assert only["delivery"] == {"id": "d1"}
    again = gql(client, redrive, id=letter_id)
    assert "already redriven" in again["errors"][0]["message"]
    assert enqueued == [["d1"]]


def test_nested_lists_cost_the_same_statements_for_5_or_20_rules(
    settings: Settings, client: TestClient
) -> None:
    def add_rules(start: int, stop: int) -> None:
        with get_database(settings.sqlalchemy_url).session() as session:
            for i in range(start, stop):
                put_rule(session, name=f"rule-{i:02}", event_pattern={"source": ["load"]})
                put_targets(
                    session,
                    None,
                    f"rule-{i:02}",
                    [{"Id": f"t{j}", "Arn": ECHO} for j in range(3)],
                )
        put(settings, "load")

    statements: list[str] = []
    engine = get_database(settings.sqlalchemy_url).engine

    def count(*args: Any) -> None:
        statements.append(args[2])

    query = """{ rules { name targets { id arn }
                         recentEvents { id deliveries { id attemptLog { number } } } } }"""

    def statements_for_query() -> int:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            rules = data(client, query)["rules"]
        finally:
            event.remove(engine, "before_cursor_execute", count)
        rules = [r for r in rules if r["name"].startswith("rule-")]  # not the shipped example
        assert all(len(rule["targets"]) == 3 for rule in rules)
        assert all(rule["recentEvents"] for rule in rules)
        return len(statements)

    add_rules(0, 5)
    with_5 = statements_for_query()
    add_rules(5, 20)
    with_20 = statements_for_query()
    assert len(data(client, "{ rules { name } }")["rules"]) == 20 + shipped_rules(client)
    assert with_20 == with_5, statements
    assert with_20 <= 8, statements
