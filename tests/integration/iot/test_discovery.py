"""Home Assistant MQTT discovery (app/iot/discovery.py): the configs HA reads, rendered with
Jinja as HA does, then published for real through a password-protected Mosquitto, read back by
Home Assistant's own MQTT user, and withdrawn when the device goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2.sandbox
import pytest

from app.bus.targets.mqtt import close_publishers
from app.db import get_database, utcnow
from app.iot.devices import add_device, home_assistant_credentials, remove_device
from app.iot.discovery import (
    announce,
    announce_device,
    config_topic,
    discovery_messages,
    object_id,
    sensor_config,
    value_template,
    withdraw,
)
from app.iot.models import Device, Probe
from tests.integration.iot.test_provisioning import (
    Client,
    Setup,
    client_pool,
    make_setup,
    running_auth_broker,
)
from tests.services import free_port


def render(template: str, payload: Any) -> str:
    """As HA renders a value_template: Jinja with the parsed JSON as ``value_json``."""
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.Undefined)
    return environment.from_string(template).render(value_json=payload, value=json.dumps(payload))


def message(*probes: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": "pit", "seq": 1, "ts": "2026-05-01T12:00:00Z", "probes": list(probes)}


# --- the configs --------------------------------------------------------------------------------


def test_sensor_config_has_what_home_assistant_needs() -> None:
    config = sensor_config("backyard-pi", "Backyard Pi", "brisket", "Brisket")
    assert config["name"] == "Brisket"
    assert config["device_class"] == "temperature"
    assert config["unit_of_measurement"] == "°C"
    assert config["state_class"] == "measurement"
    assert config["state_topic"] == "smokehouse/backyard-pi/telemetry"
    assert config["availability_topic"] == "smokehouse/backyard-pi/status"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["unique_id"] == "smokehouse_backyard-pi_brisket"
    assert config["device"] == {
        "identifiers": ["smokehouse_backyard-pi"],
        "name": "Backyard Pi",
        "manufacturer": "smokehouse",
        "model": "BBQ thermometer",
    }
    assert config_topic("backyard-pi", "brisket") == (
        "homeassistant/sensor/backyard-pi_brisket/config"
    )


def test_object_ids_keep_to_what_home_assistant_allows() -> None:
    assert object_id("pi.v2", "meat.1") == "pi_v2_meat_1"
    assert config_topic("pi.v2", "x", "ha") == "ha/sensor/pi_v2_x/config"


@pytest.mark.parametrize(
    ("probes", "rendered"),
    [
        ([{"id": "pit", "temp_c": 110.25, "status": "ok"}], "110.25"),
        (
            [
                {"id": "meat", "temp_c": 60.0, "status": "ok"},
                {"id": "pit", "temp_c": 98.5, "status": "ok"},
            ],
            "98.5",
        ),
        # unplugged: HA turns the rendered "None" into the state "unknown"
        ([{"id": "pit", "temp_c": None, "status": "open"}], "None"),
        # not in this message: an empty render, which HA ignores (keeps the last value)
        ([{"id": "meat", "temp_c": 60.0, "status": "ok"}], ""),
        ([], ""),
    ],
)
def test_value_template_picks_the_probe(probes: list[dict[str, Any]], rendered: str) -> None:
    assert render(value_template("pit"), message(*probes)) == rendered


def test_value_template_quotes_the_probe_id() -> None:
    payload = message({"id": 'we"ird', "temp_c": 1.5, "status": "ok"})
    assert render(value_template('we"ird'), payload) == "1.5"


def test_one_retained_config_per_probe() -> None:
    messages = discovery_messages("pit", "Pit", [("a", "Alpha"), ("b", None)])
    assert [topic for topic, _ in messages] == [
        "homeassistant/sensor/pit_a/config",
        "homeassistant/sensor/pit_b/config",
    ]
    assert [json.loads(payload)["name"] for _, payload in messages] == ["Alpha", "b"]


# --- through Mosquitto --------------------------------------------------------------------------


@pytest.fixture
def mqtt_clients() -> Iterator[Any]:
    with client_pool() as make:
        yield make


@pytest.fixture
def ha_setup(
    tmp_path: Path, database_url: str, settings_factory: Any
) -> Iterator[tuple[Setup, str]]:
    """A password-protected Mosquitto, provisioning set up for it, and Home Assistant's user."""
    with running_auth_broker(tmp_path) as broker:
        setup = make_setup(broker, database_url, settings_factory)
        with setup.session() as session:
            credentials = home_assistant_credentials(setup.settings, session, prov=setup.prov)
        setup.reload()
        try:
            yield setup, credentials.password
        finally:
            close_publishers()


def configs(client: Client, timeout: float = 5) -> dict[str, Any]:
    return {
        topic: (json.loads(payload) if payload else None, retained)
        for topic, payload, retained in client.received(timeout)
        if topic.startswith("homeassistant/")
    }


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_announced_configs_reach_home_assistant_and_render_live_telemetry(
    ha_setup: tuple[Setup, str], mqtt_clients: Any
) -> None:
    setup, ha_password = ha_setup
    with setup.session() as session:
        device_password = add_device(
            setup.settings, session, "Backyard Pi", home_assistant=True, prov=setup.prov
        ).password
        session.add_all(
            [
                Probe(device_id="backyard-pi", probe_id="pit", name="Pit", role="pit"),
                Probe(device_id="backyard-pi", probe_id="brisket", name="Brisket"),
            ]
        )
    setup.reload()
    time.sleep(0.3)  # the reload is asynchronous; the service user existed before it anyway
    with setup.session() as session:
        announce(setup.settings, session, "backyard-pi", ["pit", "brisket"])

    # Home Assistant connects later: the configs are retained
    ha = mqtt_clients(setup.broker, "homeassistant", ha_password)
    assert ha.connected()
    ha.subscribe("homeassistant/#")
    got = configs(ha)
    assert set(got) == {
        "homeassistant/sensor/backyard-pi_pit/config",
        "homeassistant/sensor/backyard-pi_brisket/config",
    }
    pit, retained = got["homeassistant/sensor/backyard-pi_pit/config"]
    assert retained
    assert pit["name"] == "Pit"
    assert pit["unit_of_measurement"] == "°C"

    # HA reads the device's own topic: the template picks the probe out of a real message
    ha.subscribe(pit["state_topic"])
    ha.subscribe(pit["availability_topic"])
    device = mqtt_clients(setup.broker, "backyard-pi", device_password)
    assert device.connected()
    assert device.publish("smokehouse/backyard-pi/status", b"online", retain=True) == 0
    payload = message(
        {"id": "pit", "temp_c": 107.5, "status": "ok"},
        {"id": "brisket", "temp_c": None, "status": "open"},
    )
    assert device.publish("smokehouse/backyard-pi/telemetry", json.dumps(payload).encode()) == 0
    live = {topic: body for topic, body, _ in ha.received(5)}
    assert live["smokehouse/backyard-pi/status"] == pit["payload_available"].encode()
    telemetry = json.loads(live["smokehouse/backyard-pi/telemetry"])
    assert render(pit["value_template"], telemetry) == "107.5"
    brisket = got["homeassistant/sensor/backyard-pi_brisket/config"][0]
    assert render(brisket["value_template"], telemetry) == "None"

    # removing the device withdraws its entities: empty retained payloads clear them
    with setup.session() as session:
        removed = remove_device(setup.settings, session, "backyard-pi", prov=setup.prov)
    assert withdraw(setup.settings, removed.device_id, removed.probe_ids, prov=setup.prov) == 2
    cleared = configs(ha)
    assert set(cleared) == set(got)
    assert all(body is None for body, _ in cleared.values())
    late = mqtt_clients(setup.broker, "homeassistant", ha_password)
    assert late.connected()
    late.subscribe("homeassistant/#")
    assert configs(late, timeout=1) == {}


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_devices_that_did_not_opt_in_are_not_announced(
    ha_setup: tuple[Setup, str], mqtt_clients: Any
) -> None:
    setup, ha_password = ha_setup
    with setup.session() as session:
        add_device(setup.settings, session, "Quiet", prov=setup.prov)
        session.add(Probe(device_id="quiet", probe_id="pit", name="pit"))
    with setup.session() as session:
        assert announce_device(setup.settings, session, "quiet") == 0
        assert announce_device(setup.settings, session, "ghost") == 0
        announce(setup.settings, session, "quiet", ["pit"])
    ha = mqtt_clients(setup.broker, "homeassistant", ha_password)
    assert ha.connected()
    ha.subscribe("homeassistant/#")
    assert configs(ha, timeout=1) == {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_announce_never_raises_when_the_broker_is_away(
    settings_factory: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_factory(
        database_url=database_url, mqtt_url=f"mqtt://127.0.0.1:{free_port()}"
    )
    with get_database(settings.sqlalchemy_url).session() as session:
        session.add(
            Device(
                id="pit",
                name="Pit",
                mqtt_username="pit",
                home_assistant_discovery=True,
                created_at=utcnow(),
            )
        )
        session.add(Probe(device_id="pit", probe_id="p1", name="p1"))
    try:
        started = time.monotonic()
        with get_database(settings.sqlalchemy_url).session() as session:
            announce(settings, session, "pit", ["p1"])
        assert time.monotonic() - started < 10
        assert "Home Assistant discovery failed" in caplog.text
    finally:
        close_publishers()
