"""The Mosquitto ACL smokehouse writes gives its own user exactly the topics it uses and each
device exactly its own two topics, checked against a real Mosquitto (MQTT 5 clients read the
PUBACK reason codes: 0x87 is a refusal)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.iot.mosquitto import AuthFiles, DeviceLogin, reload_mosquitto, service_acl, sync
from app.realtime import MQTT_PREFIX
from tests.integration.iot.test_provisioning import (
    AuthBroker,
    Client,
    can_connect,
    client_pool,
    running_auth_broker,
)
from tests.services import wait_for

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87
SERVICE = "smokehouse"


class Users:
    def __init__(self, broker: AuthBroker, make: Any) -> None:
        self.broker = broker
        self.make = make
        self.passwords = {SERVICE: f"svc-{uuid.uuid4().hex}", "pit-a": "pa-" + uuid.uuid4().hex}

    def client(self, username: str) -> Client:
        client: Client = self.make(self.broker, username, self.passwords[username])
        assert client.connected()
        return client


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    with running_auth_broker(tmp_path) as broker, client_pool() as make:
        found = Users(broker, make)
        files = AuthFiles(
            broker.password_file,
            broker.acl_file,
            mode=0o600,
            extra_service_write=("display/pit",),
        )
        sync(
            files,
            [DeviceLogin("pit-a", "pit-a")],
            service=(SERVICE, found.passwords[SERVICE]),
            new_passwords={"pit-a": found.passwords["pit-a"]},
        )
        reload_mosquitto(broker.pid_file)
        wait_for(lambda: can_connect(broker, SERVICE, found.passwords[SERVICE]), 10, what="reload")
        yield found


def test_the_server_may_use_its_own_topics(users: Users) -> None:
    server = users.client(SERVICE)
    # ingest: telemetry (also as a shared subscription) and status
    assert server.subscribe("$share/smokehouse/smokehouse/+/telemetry") == 1
    assert server.subscribe("smokehouse/+/status") == 1
    # Home Assistant discovery configs, a configured bus-target topic, the live fan-out
    assert server.publish("homeassistant/sensor/pit-a_p1/config", b"{}") < 0x80
    assert server.publish("display/pit", b"hot") < 0x80
    assert server.subscribe(f"{MQTT_PREFIX}readings:pit-a") == 1
    assert server.publish(f"{MQTT_PREFIX}readings:pit-a", b"{}") < 0x80
    assert server.received(3) == [(f"{MQTT_PREFIX}readings:pit-a", b"{}", False)]


def test_the_server_gets_nothing_else(users: Users) -> None:
    server = users.client(SERVICE)
    for topic in (
        "smokehouse/pit-a/telemetry",  # speak for a device
        "smokehouse/pit-a/status",
        "homeassistant/status",  # only sensor configs
        "display/other",  # a topic nobody configured
        "anything",
    ):
        assert server.publish(topic, b"x") == NOT_AUTHORIZED, topic
    # Mosquitto 2.0 grants a SUBACK and filters per message: nothing outside the ACL arrives.
    server.subscribe("#")
    device = users.client("pit-a")
    assert device.publish("smokehouse/pit-a/status", b"online") < 0x80
    assert device.publish("smokehouse/pit-a/telemetry", b"{}") < 0x80
    got = {topic for topic, _, _ in server.received(3)}
    assert got == {"smokehouse/pit-a/status", "smokehouse/pit-a/telemetry"}


def test_a_device_may_publish_only_its_telemetry_and_status(users: Users) -> None:
    device = users.client("pit-a")
    assert device.publish("smokehouse/pit-a/telemetry", b"{}") < 0x80
    assert device.publish("smokehouse/pit-a/status", b"online", retain=True) < 0x80
    for topic in (
        "smokehouse/pit-a/other",  # under its own id, but not one of its two topics
        "smokehouse/pit-a/telemetry/x",
        "smokehouse/pit-b/telemetry",
        f"{MQTT_PREFIX}alarms",  # the live fan-out the dashboard trusts
        "homeassistant/sensor/x/config",
        "display/pit",
    ):
        assert device.publish(topic, b"x") == NOT_AUTHORIZED, topic


def test_the_acl_file_lists_exactly_these_topics() -> None:
    user = service_acl(SERVICE, ("display/pit",))
    assert set(user.read) == {"smokehouse/+/telemetry", "smokehouse/+/status"}
    assert set(user.write) == {"homeassistant/sensor/+/config", "display/pit"}
    assert set(user.readwrite) == {f"{MQTT_PREFIX}#"}
    assert "#" not in (*user.read, *user.write, *user.readwrite)


def test_the_live_topics_are_the_fan_outs() -> None:
    from app.iot.mosquitto import LIVE_TOPICS

    assert f"{MQTT_PREFIX}#" == LIVE_TOPICS


def test_sync_gives_the_server_the_topics_of_the_rules_mqtt_targets(
    settings_factory: Any, tmp_path: Path
) -> None:
    from app.bus.service import put_rule, put_targets
    from app.db import get_database
    from app.iot.devices import sync_auth_files
    from app.iot.provisioning_settings import load_provisioning_settings
    from tests.services import migrate

    settings = settings_factory(mqtt_url=f"mqtt://{SERVICE}:pw@127.0.0.1:1883")
    migrate(settings.sqlalchemy_url)
    prov = load_provisioning_settings(
        mosquitto_password_file=tmp_path / "auth" / "passwd",
        mosquitto_acl_file=tmp_path / "auth" / "acl",
        service_write_topics="extra/one",
    )
    with get_database(settings.sqlalchemy_url).session() as session:
        put_rule(session, name="to-display", event_pattern={"source": ["x"]})
        targets = [
            {"Id": "a", "Arn": "arn:smokehouse:mqtt:display/pit"},
            {"Id": "b", "Arn": "arn:smokehouse:mqtt:smokehouse/alarms/pit-a"},
        ]
        assert put_targets(session, None, "to-display", targets) == []
    with get_database(settings.sqlalchemy_url).session() as session:
        sync_auth_files(settings, session, prov=prov)
    acl = (tmp_path / "auth" / "acl").read_text()
    block = acl[acl.index(f"user {SERVICE}") :]
    lines = [line for line in block.splitlines() if line.startswith("topic ")]
    assert sorted(lines) == sorted(
        [
            "topic read smokehouse/+/telemetry",
            "topic read smokehouse/+/status",
            "topic write homeassistant/sensor/+/config",
            "topic write extra/one",
            "topic write display/pit",
            "topic write smokehouse/alarms/pit-a",
            "topic readwrite smokehouse/_live/#",
        ]
    )
