"""Celery queue targets send a real task message to the embedded SQLite broker; the test reads it
back with kombu exactly as a worker's consumer would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.message import Message

import app.broker.sqlite  # noqa: F401  (the smokehouse+sqlite:// scheme)
from app.bus.targets import TargetFailure, adapter_for, validate_target
from app.config import Settings
from app.db import Database
from tests.integration.targets.conftest import EVENT, make_context

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(settings: Settings) -> Iterator[Connection]:
    with Connection(settings.celery_broker_url) as connection:
        yield connection


def take(broker: Connection, queue: str) -> Message:
    simple = broker.SimpleQueue(queue)
    try:
        message: Message = simple.get(timeout=5)
        message.ack()
        return message
    finally:
        simple.close()


def deliver(settings: Settings, spec: dict[str, Any], delivery_id: str) -> None:
    context, payload = make_context(settings, spec, delivery_id=delivery_id)
    adapter = adapter_for(spec["Arn"])
    assert adapter is not None
    assert adapter.kind == "celery"
    assert adapter.deliver(context, payload) is None


def test_the_task_message_names_task_queue_id_and_carries_the_input(
    settings: Settings, broker: Connection
) -> None:
    spec = {"Id": "q", "Arn": "arn:smokehouse:celery:iot:iot.ingest"}
    deliver(settings, spec, "d-1")
    message = take(broker, "iot")
    assert message.headers["task"] == "iot.ingest"
    assert message.headers["id"] == "d-1"  # the task id is the delivery id
    args, kwargs, _embed = message.decode()
    assert args == [EVENT]
    assert kwargs == {}
    assert message.delivery_info["routing_key"] == "iot"


def test_a_redelivered_attempt_sends_the_same_task_id(
    settings: Settings, broker: Connection
) -> None:
    spec = {"Id": "q", "Arn": "arn:smokehouse:celery:default:system.ping"}
    deliver(settings, spec, "d-2")
    deliver(settings, spec, "d-2")
    assert {take(broker, "default").headers["id"] for _ in range(2)} == {"d-2"}


def test_a_text_template_arrives_as_a_string(settings: Settings, broker: Connection) -> None:
    spec = {
        "Id": "q",
        "Arn": "arn:smokehouse:celery:default:system.ping",
        "InputTransformer": {
            "InputPathsMap": {"order": "$.detail.order"},
            "InputTemplate": "order <order> placed",
        },
    }
    deliver(settings, spec, "d-3")
    args, _kwargs, _embed = take(broker, "default").decode()
    assert args == ["order o-1 placed"]


def test_an_unreachable_broker_is_a_retryable_failure(settings_factory: Any) -> None:
    from tests.services import free_port

    settings = settings_factory(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    spec = {"Id": "q", "Arn": "arn:smokehouse:celery:default:system.ping"}
    context, payload = make_context(settings, spec)
    adapter = adapter_for(spec["Arn"])
    assert adapter is not None
    with pytest.raises(TargetFailure) as caught:
        adapter.deliver(context, payload)
    assert caught.value.retryable
    assert caught.value.code == "BrokerError"


def test_validation(database: Database) -> None:
    with database.session() as session:
        ok = {"Id": "q", "Arn": "arn:smokehouse:celery:runners:runners.dispatch"}
        assert validate_target(session, ok) is None
        unknown = {"Id": "q", "Arn": "arn:smokehouse:celery:nope:system.ping"}
        assert "Celery queue 'nope' does not exist" in str(validate_target(session, unknown))
        no_task = {"Id": "q", "Arn": "arn:smokehouse:celery:default"}
        assert "is not valid" in str(validate_target(session, no_task))
