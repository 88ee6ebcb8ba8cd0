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
from tests.services import free_port, migrate, mosquitto, wait_for

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


# --- a broker whose ACL refuses the topic (MQTT 5 PUBACK reason codes) ---------------------------


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Mosquitto with passwords and an ACL (the shipped auth.conf): the server's user may publish
    under ``allowed/#`` only. Yields the server's URL and the broker's log file."""
    from app.iot.mosquitto import AuthFiles, reload_mosquitto, sync
    from tests.integration.iot.test_provisioning import running_auth_broker

    password = f"svc-{uuid.uuid4().hex}"
    with running_auth_broker(tmp_path) as broker:
        files = AuthFiles(
            broker.password_file, broker.acl_file, mode=0o600, extra_service_write=("allowed/#",)
        )
        sync(files, [], service=("smokehouse", password))
        reload_mosquitto(broker.pid_file)
        url = broker.url("smokehouse", password)
        # Mosquitto rereads its files on SIGHUP: wait until the server's user gets in.
        wait_for(lambda: _connects(url), 10, what="the server's MQTT user")
        yield url, broker.log_file
    mqtt_target.close_publishers()


def _connects(url: str) -> bool:
    from app.mqtt import probe

    try:
        probe(MqttEndpoint.from_url(url))
    except ConnectionError:
        return False
    return True


def test_a_publish_the_acl_refuses_is_a_failed_delivery(
    settings_factory: Callable[..., Settings], acl_broker: tuple[str, Path]
) -> None:
    """Over MQTT 3.1.1 Mosquitto PUBACKs a publish its ACL refuses (and drops it), so the target
    reported success; over MQTT 5 the PUBACK carries 0x87 Not authorized and the attempt fails."""
    url, _log = acl_broker
    settings = settings_factory(mqtt_url=url)
    migrate(settings.sqlalchemy_url)
    deliver(settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:allowed/x"})  # accepted
    context, payload = make_context(settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:denied/x"})
    with pytest.raises(TargetFailure) as caught:
        mqtt_target.MqttTarget().deliver(context, payload)
    assert caught.value.code == "MqttRefused"
    assert "Not authorized" in caught.value.message
    assert "0x87" in caught.value.message
    assert not caught.value.retryable


def test_a_refused_publish_is_recorded_failed_and_dead_lettered(
    settings_factory: Callable[..., Settings], acl_broker: tuple[str, Path]
) -> None:
    from app.bus.arns import Scope
    from app.bus.delivery import deliver as run_delivery
    from app.bus.events import put_events
    from app.bus.models import DeadLetter, Delivery
    from app.bus.service import put_rule, put_targets
    from app.db import get_database

    url, _log = acl_broker
    settings = settings_factory(mqtt_url=url)
    migrate(settings.sqlalchemy_url)
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        put_rule(session, name="to-mqtt", event_pattern={"source": ["shop.orders"]})
        targets = [
            {"Id": "ok", "Arn": "arn:smokehouse:mqtt:allowed/orders"},
            {"Id": "denied", "Arn": "arn:smokehouse:mqtt:denied/orders"},
        ]
        assert put_targets(session, None, "to-mqtt", targets) == []
    entry = {"Source": "shop.orders", "DetailType": "Order Placed", "Detail": '{"order": "o-9"}'}
    with database.session() as session:
        ids = put_events(session, [entry], Scope(settings.region, settings.account_id)).delivery_ids
    outcomes = {run_delivery(settings, delivery_id) for delivery_id in ids}
    assert outcomes == {"succeeded", "failed"}
    with database.session() as session:
        by_target = {d.target_id: d for d in (session.get(Delivery, i) for i in ids) if d}
        assert by_target["ok"].status == "succeeded"
        denied = by_target["denied"]
        assert denied.status == "dead"
        assert denied.last_error is not None
        assert denied.last_error.startswith("MqttRefused: ")
        assert "Not authorized (0x87)" in denied.last_error
        [dead] = session.query(DeadLetter).filter_by(delivery_id=denied.id).all()
        assert dead.error_code == "MqttRefused"


def test_mosquitto_gets_mqtt_5_and_the_embedded_broker_3_1_1(
    mqtt_settings: Settings, subscribe: Callable[[str], Subscriber], tmp_path: Path
) -> None:
    """The embedded amqtt broker speaks only 3.1.1: the target asks first and falls back (amqtt
    has no ACL, so there is no refusal to miss there)."""
    import asyncio
    import threading

    from amqtt.broker import Broker

    from app.iot.embedded_broker import broker_config

    deliver(mqtt_settings, {"Id": "m", "Arn": "arn:smokehouse:mqtt:a/b"})
    assert mqtt_target.publisher_for(mqtt_settings.effective_mqtt_url).v5 is True

    port = free_port()
    ready, done = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            broker = Broker(broker_config(port))
            await broker.start()
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.05)
            await broker.shutdown()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        url = f"mqtt://127.0.0.1:{port}"
        received: queue.Queue[bytes] = queue.Queue()
        listener = make_client(MqttEndpoint.from_url(url), "amqtt-listener")
        subscribed: queue.Queue[bool] = queue.Queue()
        listener.on_subscribe = lambda *_: subscribed.put(True)
        listener.on_message = lambda _c, _u, message: received.put(message.payload)
        listener.connect("127.0.0.1", port)
        listener.subscribe("display/#", qos=1)
        listener.loop_start()
        try:
            assert subscribed.get(timeout=5)
            mqtt_target.publisher_for(url).publish("display/pit", b"hot", 1, False, 5)
            assert mqtt_target.publisher_for(url).v5 is False
            assert received.get(timeout=5) == b"hot"
        finally:
            listener.disconnect()
            listener.loop_stop()
            mqtt_target.close_publishers()
    finally:
        done.set()
        thread.join(10)
