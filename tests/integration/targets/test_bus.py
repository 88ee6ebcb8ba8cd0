"""Bus-to-bus forwarding on SQLite and PostgreSQL: routed like PutEvents on the receiving bus,
stored once however often the delivery is attempted, and never looping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.bus.arns import Scope
from app.bus.events import put_events
from app.bus.models import Delivery, Event
from app.bus.service import create_bus, put_rule, put_targets
from app.bus.targets import TargetFailure, adapter_for, validate_target
from app.bus.targets.bus import forwarded_event_id, is_forwarded
from app.config import Settings
from app.db import Database, _databases, get_database
from tests.integration.targets.conftest import Enqueued, make_context

pytestmark = pytest.mark.integration

ORDERS_PATTERN = {"source": ["shop.orders"]}
QUEUE_TARGET = {"Id": "work", "Arn": "arn:smokehouse:celery:default:system.ping"}


@pytest.fixture
def bus_settings(
    settings_factory: Callable[..., Settings], database_url: str
) -> Iterator[Settings]:
    settings = settings_factory(database_url=database_url)
    yield settings
    database = _databases.pop(settings.sqlalchemy_url, None)
    if database is not None:
        database.dispose()


@pytest.fixture
def db(bus_settings: Settings) -> Database:
    return get_database(bus_settings.sqlalchemy_url)


def bus_arn(settings: Settings, name: str) -> str:
    return Scope(settings.region, settings.account_id).bus_arn(name)


def rule_arn(settings: Settings, bus: str, rule: str) -> str:
    return Scope(settings.region, settings.account_id).rule_arn(bus, rule)


def setup_forwarding(settings: Settings, db: Database, target: dict[str, Any]) -> None:
    """orders --(rule "to-audit")--> target; audit --(rule "audit-all")--> a work queue."""
    with db.session() as session:
        create_bus(session, "orders")
        create_bus(session, "audit")
        put_rule(session, name="to-audit", bus_name="orders", event_pattern=ORDERS_PATTERN)
        put_rule(session, name="audit-all", bus_name="audit", event_pattern=ORDERS_PATTERN)
        assert put_targets(session, "orders", "to-audit", [target]) == []
        assert put_targets(session, "audit", "audit-all", [QUEUE_TARGET]) == []


def publish(settings: Settings, db: Database) -> tuple[dict[str, Any], Delivery]:
    """Put one event on "orders"; return it and its delivery to the forwarding target."""
    entry = {
        "EventBusName": "orders",
        "Source": "shop.orders",
        "DetailType": "Order Placed",
        "Detail": '{"order": "o-7", "total": 3}',
        "Resources": ["arn:aws:shop:order/o-7"],
        "Time": "2024-05-01T10:00:00Z",
    }
    with db.session() as session:
        result = put_events(session, [entry], Scope(settings.region, settings.account_id))
        [delivery_id] = result.delivery_ids
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        event = session.get(Event, delivery.event_id)
        assert event is not None
        return dict(event.envelope), delivery


def forward(
    settings: Settings, delivery: Delivery, event: dict[str, Any], enqueued: Enqueued
) -> None:
    context, payload = make_context(
        settings,
        dict(delivery.target_spec),
        event=event,
        delivery_id=delivery.id,
        rule_arn=rule_arn(settings, delivery.bus_name, delivery.rule_name),
        enqueued=enqueued,
    )
    adapter = adapter_for(context.spec["Arn"])
    assert adapter is not None
    assert adapter.kind == "event-bus"
    assert adapter.deliver(context, payload) is None


def test_forwarding_twice_stores_the_event_once(bus_settings: Settings, db: Database) -> None:
    setup_forwarding(bus_settings, db, {"Id": "audit", "Arn": bus_arn(bus_settings, "audit")})
    original, delivery = publish(bus_settings, db)
    enqueued = Enqueued()
    forward(bus_settings, delivery, original, enqueued)
    forward(bus_settings, delivery, original, enqueued)  # a retried attempt

    with db.session() as session:
        on_audit = session.scalars(select(Event).where(Event.bus_name == "audit")).all()
        assert len(on_audit) == 1
        forwarded = on_audit[0].envelope
        audit_deliveries = session.scalars(
            select(Delivery).where(Delivery.bus_name == "audit")
        ).all()
    assert forwarded["id"] == forwarded_event_id(delivery.id) != original["id"]
    assert is_forwarded(forwarded["id"])
    for key in ("source", "detail-type", "detail", "resources", "time"):
        assert forwarded[key] == original[key]
    assert [d.rule_name for d in audit_deliveries] == ["audit-all"]
    # The first attempt hands the new delivery to the queue; the retry finds nothing to add.
    assert enqueued == [[audit_deliveries[0].id]]


def test_an_input_transformer_reshapes_the_forwarded_detail(
    bus_settings: Settings, db: Database
) -> None:
    target = {
        "Id": "audit",
        "Arn": bus_arn(bus_settings, "audit"),
        "InputTransformer": {
            "InputPathsMap": {"order": "$.detail.order"},
            "InputTemplate": '{"audited": <order>}',
        },
    }
    setup_forwarding(bus_settings, db, target)
    original, delivery = publish(bus_settings, db)
    forward(bus_settings, delivery, original, Enqueued())
    with db.session() as session:
        [event] = session.scalars(select(Event).where(Event.bus_name == "audit")).all()
    assert event.envelope["detail"] == {"audited": "o-7"}
    assert event.envelope["source"] == "shop.orders"


def test_a_forwarded_event_is_not_forwarded_to_a_third_bus(
    bus_settings: Settings, db: Database
) -> None:
    setup_forwarding(bus_settings, db, {"Id": "audit", "Arn": bus_arn(bus_settings, "audit")})
    with db.session() as session:
        create_bus(session, "archive")
        put_rule(session, name="onwards", bus_name="audit", event_pattern=ORDERS_PATTERN)
        target = {"Id": "third", "Arn": bus_arn(bus_settings, "archive")}
        assert put_targets(session, "audit", "onwards", [target]) == []
    original, delivery = publish(bus_settings, db)
    enqueued = Enqueued()
    forward(bus_settings, delivery, original, enqueued)
    with db.session() as session:
        [onwards] = session.scalars(select(Delivery).where(Delivery.rule_name == "onwards")).all()
        forwarded = session.get(Event, onwards.event_id)
        assert forwarded is not None
        envelope = dict(forwarded.envelope)
    with pytest.raises(TargetFailure) as caught:
        forward(bus_settings, onwards, envelope, Enqueued())
    assert not caught.value.retryable
    assert caught.value.code == "EventBusLoop"


def test_a_rule_targeting_its_own_bus_does_not_loop(bus_settings: Settings, db: Database) -> None:
    setup_forwarding(bus_settings, db, {"Id": "self", "Arn": bus_arn(bus_settings, "orders")})
    original, delivery = publish(bus_settings, db)
    with pytest.raises(TargetFailure) as caught:
        forward(bus_settings, delivery, original, Enqueued())
    assert not caught.value.retryable
    assert caught.value.code == "EventBusLoop"


def test_validation(bus_settings: Settings, db: Database) -> None:
    with db.session() as session:
        create_bus(session, "audit")
        ok = {"Id": "b", "Arn": bus_arn(bus_settings, "audit")}
        assert validate_target(session, ok) is None
        missing = {"Id": "b", "Arn": bus_arn(bus_settings, "nope")}
        assert validate_target(session, missing) == "Event bus nope does not exist."
