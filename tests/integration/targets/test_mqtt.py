"""MQTT targets publish to a real Mosquitto (the project's config, on a free port); a paho
subscriber checks payload, QoS and the retain flag."""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from app.bus.targets import TargetFailure, adapter_for, validate_target
from app.bus.targets import mqtt as mqtt_target
from app.config import Settings
from app.db import Database
from app.mqtt import MqttEndpoint, make_client
from tests.integration.targets.conftest import EVENT, make_context
from tests.services import free_port, mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_url(tmp_path: Path) -> Iterator[str]:
    with mosquitto(tmp_path) as url:
        yield url
    mqtt_target.close_publishers()


@pytest.fixture
def mqtt_settings(settings_factory: Callable[..., Settings], broker_url: str) -> Settings:
    return settings_factory(mqtt_url=broker_url)


class Subscriber:
    def __init__(self, url: str, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = queue.Queue[bool]()
        self.client = make_client(MqttEndpoint.from_url(url), f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda *_args: self.subscribed.put(True)
        self.client.on_connect = lambda client, *_args: client.subscribe(topic, qos=1)
        endpoint = MqttEndpoint.from_url(url)
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()
        assert self.subscribed.get(timeout=5)

    def next(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe(broker_url: str) -> Iterator[Callable[[str], Subscriber]]:
    opened: list[Subscriber] = []

    def open_one(topic: str) -> Subscriber:
        opened.append(Subscriber(broker_url, topic))
        return opened[-1]

    yield open_one
    for subscriber in opened:
        subscriber.close()


def deliver(settings: Settings, spec: dict[str, Any]) -> None:
    context, payload = make_context(settings, spec)
    adapter = adapter_for(spec["Arn"])
    assert adapter is not None
    assert adapter.kind == "mqtt"
    assert adapter.deliver(context, payload) is None


def test_publishes_the_input_with_qos_1_by_default(
    mqtt_settings: Settings, subscribe: Callable[[str], Subscriber]
) -> None:
    subscriber = subscribe("smokehouse/alarms/#")
    deliver(mqtt_settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:smokehouse/alarms/pit-1"})
    message = subscriber.next()
    assert message.topic == "smokehouse/alarms/pit-1"
    assert message.qos == 1
    assert not message.retain
    assert json.loads(message.payload) == EVENT


def test_qos_0_and_a_text_template(
    mqtt_settings: Settings, subscribe: Callable[[str], Subscriber]
) -> None:
    subscriber = subscribe("display/text")
    spec = {
        "Id": "m",
        "Arn": "arn:smokehouse:mqtt:display/text",
        "MqttParameters": {"Qos": 0},
        "InputTransformer": {
            "InputPathsMap": {"state": "$.detail.state"},
            "InputTemplate": "pit is <state>",
        },
    }
    deliver(mqtt_settings, spec)
    message = subscriber.next()
    assert message.payload == b"pit is RUNNING"
    assert message.qos == 0


def test_retained_messages_reach_later_subscribers(
    mqtt_settings: Settings, subscribe: Callable[[str], Subscriber]
) -> None:
    spec = {
        "Id": "m",
        "Arn": "arn:smokehouse:mqtt:smokehouse/state",
        "MqttParameters": {"Qos": 1, "Retain": True},
        "Input": '{"lid": "open"}',
    }
    deliver(mqtt_settings, spec)
    message = subscribe("smokehouse/state").next()  # subscribed after the publish
    assert message.retain
    assert message.payload == b'{"lid": "open"}'


def test_one_client_is_reused(mqtt_settings: Settings) -> None:
    first = mqtt_target.publisher_for(mqtt_settings.effective_mqtt_url)
    deliver(mqtt_settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:a/b"})
    deliver(mqtt_settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:a/c"})
    assert mqtt_target.publisher_for(mqtt_settings.effective_mqtt_url) is first


def test_a_broker_that_is_down_is_a_retryable_failure(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_target, "TIMEOUT_SECONDS", 0.5)
    settings = settings_factory(mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    context, payload = make_context(settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:x"})
    try:
        with pytest.raises(TargetFailure) as caught:
            mqtt_target.MqttTarget().deliver(context, payload)
    finally:
        mqtt_target.close_publishers()
    assert caught.value.retryable
    assert caught.value.code == "MqttUnavailable"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"Arn": "arn:smokehouse:mqtt:a/+/b"}, "wildcards"),
        ({"Arn": "arn:smokehouse:mqtt:a/#"}, "wildcards"),
        ({"Arn": "arn:smokehouse:mqtt:"}, "empty"),
        ({"Arn": "arn:smokehouse:mqtt:$SYS/x"}, "reserved"),
        ({"Arn": "arn:smokehouse:mqtt:a", "MqttParameters": {"Qos": 2}}, "Qos"),
        ({"Arn": "arn:smokehouse:mqtt:a", "MqttParameters": {"Retain": "yes"}}, "Retain"),
        ({"Arn": "arn:smokehouse:mqtt:a", "MqttParameters": {"Other": 1}}, "accepts only"),
    ],
)
def test_validation(database: Database, spec: dict[str, Any], problem: str) -> None:
    with database.session() as session:
        assert problem in str(validate_target(session, {"Id": "m", **spec}))
        ok = {"Id": "m", "Arn": "arn:smokehouse:mqtt:a/b", "MqttParameters": {"Qos": 0}}
        assert validate_target(session, ok) is None
