"""Device provisioning against the real Mosquitto: the password and ACL files smokehouse writes
are the ones a private ``mosquitto`` (``allow_anonymous false``, the shipped
deploy/mosquitto/auth.conf with its paths moved) enforces.

What a user relies on: a provisioned device publishes under its own topic and the server's user
receives it (plain and ``$share`` subscriptions); a device can't publish under another device's
topic (MQTT 5 PUBACK 0x87) nor read it; wrong passwords and anonymous clients are refused; after
``remove`` and ``rotate`` (and the SIGHUP smokehouse sends via the pid file) the old credentials
stop working. The CLI is run as a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from app.config import Settings
from app.db import get_database
from app.iot.devices import (
    DeviceError,
    DeviceExists,
    DeviceNotFound,
    add_device,
    check_device_id,
    remove_device,
    rotate_credentials,
    set_notify_urls,
    slugify,
    sync_auth_files,
)
from app.iot.models import Device, Probe
from app.iot.provisioning_settings import ProvisioningSettings, load_provisioning_settings
from app.migrate import upgrade
from tests.integration.cli import run_cli
from tests.services import ROOT, free_port, tcp_open, unavailable, wait_for

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87
SERVICE_USER = "smokehouse"


# --- a Mosquitto that requires passwords ----------------------------------------------------------


@dataclass
class AuthBroker:
    """A private Mosquitto with the shipped config + auth.conf, reading our generated files."""

    port: int
    password_file: Path
    acl_file: Path
    pid_file: Path
    log_file: Path

    def url(self, username: str | None = None, password: str | None = None) -> str:
        auth = f"{username}:{password}@" if username else ""
        return f"mqtt://{auth}127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


def auth_broker_config(
    port: int, password_file: Path, acl_file: Path, pid_file: Path, log_file: Path
) -> str:
    shipped = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    kept = [
        line for line in shipped if not line.startswith(("listener", "persistence", "log_dest"))
    ]
    auth = []
    for line in (ROOT / "deploy/mosquitto/auth.conf").read_text().splitlines():
        if line.startswith("password_file "):
            line = f"password_file {password_file}"
        elif line.startswith("acl_file "):
            line = f"acl_file {acl_file}"
        auth.append(line)
    extra = [
        f"listener {port} 127.0.0.1",
        "persistence false",
        f"pid_file {pid_file}",
        f"log_dest file {log_file}",
        "log_type all",
    ]
    if os.geteuid() == 0:  # else Mosquitto drops to its own user, who can't read tmp_path
        extra.append("user root")
    return "\n".join([*kept, *extra, *auth, ""])


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[AuthBroker]:
    with running_auth_broker(tmp_path) as broker:
        yield broker


@contextmanager
def running_auth_broker(tmp_path: Path) -> Iterator[AuthBroker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        unavailable("mosquitto")
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = AuthBroker(
        port=free_port(),
        password_file=directory / "passwd",
        acl_file=directory / "acl",
        pid_file=directory / "mosquitto.pid",
        log_file=directory / "mosquitto.log",
    )
    # Mosquitto won't start without its password file: start from empty ones, as compose does.
    broker.password_file.touch()
    broker.acl_file.touch()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        auth_broker_config(
            broker.port, broker.password_file, broker.acl_file, broker.pid_file, broker.log_file
        )
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(
            lambda: process.poll() is not None or tcp_open(broker.url(), broker.port),
            10,
            what="mosquitto to listen",
        )
        if process.poll() is not None:
            raise AssertionError(f"mosquitto exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
        wait_for(broker.pid_file.exists, 5, what="mosquitto's pid file")
        yield broker
    finally:
        process.terminate()
        process.wait(10)


# --- MQTT 5 clients -------------------------------------------------------------------------------


class Client:
    """A paho MQTT 5 client that records CONNACK, SUBACK and PUBACK reason codes."""

    def __init__(self, broker: AuthBroker, username: str | None, password: str | None) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.acks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.done = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack.put(reason)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self.done:
            self.acks[mid] = reason.value
            self.done.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self.done:
            self.subacks[mid] = [r.value for r in reasons]
            self.done.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload), bool(message.retain)))

    def connected(self, timeout: float = 5) -> bool:
        reason = self.connack.get(timeout=timeout)
        return not reason.is_failure

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """The PUBACK's reason code (0 = accepted, 0x87 = not authorized)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self.done:
            assert self.done.wait_for(lambda: info.mid in self.acks, 5), "no PUBACK"
            return self.acks[info.mid]

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code (a granted QoS, or 0x87)."""
        _, mid = self.client.subscribe(topic, qos=1)
        with self.done:
            assert self.done.wait_for(lambda: mid in self.subacks, 5), "no SUBACK"
            return self.subacks[mid][0]

    def received(self, timeout: float) -> list[tuple[str, bytes, bool]]:
        got = []
        try:
            got.append(self.messages.get(timeout=timeout))
            while True:
                got.append(self.messages.get(timeout=0.2))
        except queue.Empty:
            return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[Any]:
    with client_pool() as make:
        yield make


@contextmanager
def client_pool() -> Iterator[Any]:
    """``make(broker, username, password)`` → a connected :class:`Client`, closed afterwards."""
    made: list[Client] = []

    def make(broker: AuthBroker, username: str | None, password: str | None) -> Client:
        made.append(Client(broker, username, password))
        return made[-1]

    yield make
    for client in made:
        client.close()


def can_connect(broker: AuthBroker, username: str | None, password: str | None) -> bool:
    client = Client(broker, username, password)
    try:
        return client.connected()
    finally:
        client.close()


# --- the service, in process (SQLite and PostgreSQL) ----------------------------------------------


@dataclass
class Setup:
    settings: Settings
    prov: ProvisioningSettings
    broker: AuthBroker
    service_password: str

    def session(self) -> Any:
        return get_database(self.settings.sqlalchemy_url).session()

    def reload(self) -> None:
        from app.iot.devices import reload_if_configured

        assert reload_if_configured(self.prov) is not None


@pytest.fixture
def setup(auth_broker: AuthBroker, database_url: str, settings_factory: Any) -> Setup:
    return make_setup(auth_broker, database_url, settings_factory)


def make_setup(auth_broker: AuthBroker, database_url: str, settings_factory: Any) -> Setup:
    service_password = f"svc-{uuid.uuid4().hex}"
    settings = settings_factory(
        database_url=database_url, mqtt_url=auth_broker.url(SERVICE_USER, service_password)
    )
    prov = load_provisioning_settings(
        mosquitto_password_file=auth_broker.password_file,
        mosquitto_acl_file=auth_broker.acl_file,
        mosquitto_pid_file=auth_broker.pid_file,
        mosquitto_file_mode="0600",
    )
    return Setup(settings, prov, auth_broker, service_password)


def provision(setup: Setup, name: str, **options: Any) -> tuple[str, str]:
    with setup.session() as session:
        credentials = add_device(setup.settings, session, name, prov=setup.prov, **options)
    setup.reload()
    return credentials.username, credentials.password


def wait_refused(broker: AuthBroker, username: str, password: str) -> None:
    """A reload takes effect within a moment; poll until these credentials stop working."""
    wait_for(lambda: not can_connect(broker, username, password), 10, what="credentials refused")


def telemetry(device_id: str, seq: int) -> bytes:
    return json.dumps(
        {
            "device_id": device_id,
            "seq": seq,
            "ts": "2026-05-01T12:00:00.000Z",
            "probes": [{"id": "pit", "temp_c": 110.5, "status": "ok"}],
        }
    ).encode()


def test_device_publishes_and_the_server_receives_it_also_via_a_shared_subscription(
    setup: Setup, clients: Any
) -> None:
    username, password = provision(setup, "Backyard Pi")
    assert username == "backyard-pi"
    server = clients(setup.broker, SERVICE_USER, setup.service_password)
    assert server.connected()
    assert server.subscribe("smokehouse/+/telemetry") == 1
    assert server.subscribe("$share/smokehouse/smokehouse/+/status") == 1
    shared = clients(setup.broker, SERVICE_USER, setup.service_password)
    assert shared.connected()
    assert shared.subscribe("$share/smokehouse/smokehouse/+/telemetry") == 1

    device = clients(setup.broker, username, password)
    assert device.connected()
    assert device.publish("smokehouse/backyard-pi/telemetry", telemetry("backyard-pi", 1)) == 0
    assert device.publish("smokehouse/backyard-pi/status", b"online", retain=True) == 0

    assert server.received(5) == [
        ("smokehouse/backyard-pi/telemetry", telemetry("backyard-pi", 1), False),
        ("smokehouse/backyard-pi/status", b"online", False),
    ]
    assert shared.received(5) == [
        ("smokehouse/backyard-pi/telemetry", telemetry("backyard-pi", 1), False)
    ]


def test_a_device_cannot_publish_or_read_under_another_devices_topic(
    setup: Setup, clients: Any
) -> None:
    a_user, a_password = provision(setup, "pit-a")
    b_user, b_password = provision(setup, "pit-b")
    server = clients(setup.broker, SERVICE_USER, setup.service_password)
    assert server.connected()
    server.subscribe("smokehouse/+/telemetry")

    forger = clients(setup.broker, a_user, a_password)
    assert forger.connected()
    assert forger.publish("smokehouse/pit-b/telemetry", telemetry("pit-b", 99)) == NOT_AUTHORIZED
    assert forger.publish("homeassistant/sensor/x/config", b"{}") == NOT_AUTHORIZED
    assert forger.publish("smokehouse/pit-a/telemetry", telemetry("pit-a", 1)) == 0
    got = server.received(3)
    assert [topic for topic, _, _ in got] == ["smokehouse/pit-a/telemetry"]

    # Mosquitto 2.0 grants the SUBACK but checks read access per message: A never gets B's.
    forger.subscribe("smokehouse/pit-b/#")
    forger.subscribe("smokehouse/+/telemetry")
    b = clients(setup.broker, b_user, b_password)
    assert b.connected()
    assert b.publish("smokehouse/pit-b/telemetry", telemetry("pit-b", 1)) == 0
    assert b.publish("smokehouse/pit-b/status", b"online", retain=True) == 0
    assert [t for t, _, _ in server.received(3)] == ["smokehouse/pit-b/telemetry"]
    assert forger.received(1) == []
    # the server may read devices but not speak for them
    assert server.publish("smokehouse/pit-b/telemetry", b"{}") == NOT_AUTHORIZED
    assert "rc135" in setup.broker.log()  # Mosquitto logs the refusals


def test_wrong_password_unknown_user_and_anonymous_are_refused(setup: Setup) -> None:
    username, password = provision(setup, "pit")
    assert can_connect(setup.broker, username, password)
    assert not can_connect(setup.broker, username, password + "x")
    assert not can_connect(setup.broker, "nobody", password)
    assert not can_connect(setup.broker, None, None)


def test_removed_device_can_no_longer_connect(setup: Setup) -> None:
    username, password = provision(setup, "pit")
    keep_user, keep_password = provision(setup, "other")
    with setup.session() as session:
        session.add(Probe(device_id="pit", probe_id="p1", name="p1"))
    with setup.session() as session:
        removed = remove_device(setup.settings, session, "pit", prov=setup.prov)
    assert removed.probe_ids == ["p1"]
    setup.reload()
    wait_refused(setup.broker, username, password)
    assert can_connect(setup.broker, keep_user, keep_password)
    with setup.session() as session:
        assert session.get(Device, "pit") is None
        assert session.query(Probe).filter_by(device_id="pit").count() == 0
    # the id is free again, with a fresh password
    new_user, new_password = provision(setup, "pit")
    assert can_connect(setup.broker, new_user, new_password)


def test_rotate_changes_the_password(setup: Setup) -> None:
    username, old = provision(setup, "pit")
    with setup.session() as session:
        new = rotate_credentials(setup.settings, session, "pit", prov=setup.prov).password
    assert new != old
    setup.reload()
    wait_refused(setup.broker, username, old)
    assert can_connect(setup.broker, username, new)


def test_the_server_user_comes_from_smokehouse_mqtt_url(setup: Setup, clients: Any) -> None:
    with setup.session() as session:
        sync_auth_files(setup.settings, session, prov=setup.prov)
    setup.reload()
    wait_for(
        lambda: can_connect(setup.broker, SERVICE_USER, setup.service_password),
        10,
        what="the server's user",
    )
    server = clients(setup.broker, SERVICE_USER, setup.service_password)
    assert server.connected()
    assert server.publish("homeassistant/sensor/x/config", b"{}") < 0x80  # 0x10: no subscribers


def test_bad_input_changes_nothing(setup: Setup) -> None:
    provision(setup, "pit", notify_urls=["ntfy://smoke"])
    before = setup.broker.password_file.read_bytes(), setup.broker.acl_file.read_bytes()
    with pytest.raises(DeviceExists), setup.session() as session:
        add_device(setup.settings, session, "Pit", prov=setup.prov)
    with pytest.raises(DeviceError, match="not a valid device id"), setup.session() as session:
        add_device(setup.settings, session, "x", device_id="a/b", prov=setup.prov)
    with pytest.raises(DeviceError, match="reserved"), setup.session() as session:
        add_device(setup.settings, session, SERVICE_USER, prov=setup.prov)
    with pytest.raises(DeviceError, match="Apprise"), setup.session() as session:
        add_device(setup.settings, session, "y", notify_urls=["nope"], prov=setup.prov)
    with pytest.raises(DeviceNotFound), setup.session() as session:
        rotate_credentials(setup.settings, session, "ghost", prov=setup.prov)
    with pytest.raises(DeviceError, match="Apprise"), setup.session() as session:
        set_notify_urls(session, "pit", ["ntfy://ok", "bogus"])
    assert (setup.broker.password_file.read_bytes(), setup.broker.acl_file.read_bytes()) == before
    with setup.session() as session:
        assert [d.id for d in session.query(Device)] == ["pit"]
        assert session.get(Device, "pit").notify_urls == ["ntfy://smoke"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Backyard Pi", "backyard-pi"),
        ("Grillmeister's Smöker #2", "grillmeister-s-smoker-2"),
        ("  pit.one_two  ", "pit.one_two"),
        ("---", ""),
        ("x" * 80, "x" * 64),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug
    if slug:
        assert check_device_id(slug) == slug


# --- the command, as a user runs it -------------------------------------------------------------


@pytest.mark.slow
def test_cli_add_prints_a_config_the_device_accepts_then_list_rotate_remove(
    auth_broker: AuthBroker, tmp_path: Path
) -> None:
    from smokehouse_device.config import load_config

    database = tmp_path / "cli.db"
    upgrade(f"sqlite:///{database}")
    service_password = "svc-" + uuid.uuid4().hex
    env = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite:///{database}",
        "mqtt_url": auth_broker.url(SERVICE_USER, service_password),
        "iot_mosquitto_password_file": auth_broker.password_file,
        "iot_mosquitto_acl_file": auth_broker.acl_file,
        "iot_mosquitto_pid_file": auth_broker.pid_file,
        "iot_device_mqtt_url": f"mqtt://127.0.0.1:{auth_broker.port}",
    }
    added = run_cli("device", "add", "Backyard Pi", "--json", cwd=tmp_path, **env)
    assert added.returncode == 0, added.stderr
    assert "reloads its password and ACL files" in added.stderr
    credentials = json.loads(added.stdout)
    assert credentials["username"] == "backyard-pi"
    assert can_connect(auth_broker, "backyard-pi", credentials["password"])
    assert can_connect(auth_broker, SERVICE_USER, service_password)  # written by the same sync

    # the printed config, with the password file installed as printed, is what the Pi loads
    (tmp_path / "mqtt-password").write_text(credentials["password"] + "\n")
    config_text = credentials["config"].replace(
        "/etc/smokehouse-device/mqtt-password", str(tmp_path / "mqtt-password")
    )
    (tmp_path / "device.toml").write_text(
        config_text.replace("# simulator = true", "simulator = true")
    )
    tomllib.loads(config_text)
    device_config = load_config(tmp_path / "device.toml")
    assert device_config.device_id == "backyard-pi"
    assert device_config.mqtt.username == "backyard-pi"
    assert device_config.mqtt.password == credentials["password"]
    assert (device_config.mqtt.host, device_config.mqtt.port) == ("127.0.0.1", auth_broker.port)

    again = run_cli("device", "add", "Backyard Pi", cwd=tmp_path, **env)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr

    human = run_cli("device", "add", "Pit Two", "--notify", "ntfy://smoke", cwd=tmp_path, **env)
    assert human.returncode == 0, human.stderr
    assert "MQTT password" in human.stdout
    assert 'username = "pit-two"' in human.stdout

    listed = run_cli("device", "list", "--json", cwd=tmp_path, **env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["notify_urls"]) for r in rows] == [("backyard-pi", 0), ("pit-two", 1)]

    rotated = run_cli("device", "rotate", "backyard-pi", "--json", cwd=tmp_path, **env)
    assert rotated.returncode == 0, rotated.stderr
    new_password = json.loads(rotated.stdout)["password"]
    wait_refused(auth_broker, "backyard-pi", credentials["password"])
    assert can_connect(auth_broker, "backyard-pi", new_password)

    removed = run_cli("device", "remove", "backyard-pi", "--yes", cwd=tmp_path, **env)
    assert removed.returncode == 0, removed.stderr
    wait_refused(auth_broker, "backyard-pi", new_password)


def test_cli_without_a_pid_file_says_how_to_reload(tmp_path: Path) -> None:
    added = run_cli("device", "add", "Pit", "--json", cwd=tmp_path, data_dir=tmp_path / "data")
    assert added.returncode == 0, added.stderr
    assert "docker compose kill -s HUP mosquitto" in added.stderr
    passwd = (tmp_path / "data" / "mosquitto" / "passwd").read_text()
    assert passwd.startswith("pit:$7$101$")
    broken = run_cli(
        "device",
        "add",
        "Other",
        cwd=tmp_path,
        data_dir=tmp_path / "data",
        iot_mosquitto_pid_file=tmp_path / "nope.pid",
    )
    assert broken.returncode == 1  # added, but Mosquitto was not told
    assert "Mosquitto not reloaded" in broken.stderr
    assert "MQTT password" in broken.stdout
