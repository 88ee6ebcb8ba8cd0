"""Test harness: a real Mosquitto on a free port, an MQTT collector (paho subscriber), and a fake
1-Wire sysfs tree. (A uniquely named module, so the suite also runs next to other `tests` trees.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class Broker:
    """A Mosquitto 2 process with a config derived from deploy/mosquitto/mosquitto.conf."""

    workdir: Path
    port: int
    persistence: bool = False
    extra: str = ""
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            "# Derived from deploy/mosquitto/mosquitto.conf for tests.",
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "max_inflight_messages 1000",
            "max_queued_messages 100000",
            "max_packet_size 262144",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # Tests run as root; keep root so the persistence/log files stay writable.
            "user root",
        ]
        if "allow_anonymous" not in self.extra:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n" + self.extra)
        return conf

    def start(self) -> None:
        assert self.proc is None
        conf = self.write_config()
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "mosquitto.stderr").open("ab"),
        )
        if not wait_until(self._listening, timeout=10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log_tail()}")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # saves the persistence db on the way out
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def log_tail(self, n: int = 30) -> str:
        text = ""
        for path in (self.log_path, self.workdir / "mosquitto.stderr"):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        return text


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Collector:
    """A paho subscriber that records everything it receives (resubscribes on reconnect)."""

    port: int
    topic: str
    client_id: str = ""
    persistent_session: bool = False
    host: str = "127.0.0.1"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    messages: list[Message] = field(default_factory=list)
    connects: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"collector-{os.getpid()}-{id(self)}",
            protocol=mqtt.MQTTv5,
        )
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.ca_file:
            self.client.tls_set(ca_certs=self.ca_file)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            return
        self.connects += 1
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.retain, msg.qos))

    def start(self, timeout: float = 5.0) -> Collector:
        props = None
        if self.persistent_session:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
        self.client.connect(
            self.host,
            self.port,
            clean_start=not self.persistent_session,
            properties=props,
        )
        self.client.loop_start()
        assert self._subscribed.wait(timeout), "collector did not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self, topic_suffix: str | None = None) -> list[Message]:
        with self._lock:
            msgs = list(self.messages)
        if topic_suffix is None:
            return msgs
        return [m for m in msgs if m.topic.endswith(topic_suffix)]

    def telemetry(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.snapshot("/telemetry")]

    def statuses(self) -> list[tuple[str, bool]]:
        return [(m.payload.decode(), m.retain) for m in self.snapshot("/status")]


def make_w1_tree(base: Path, files: dict[str, str], sensor: str) -> Path:
    """A fake /sys/bus/w1/devices with the bus master and one DS18B20 directory."""
    (base / "w1_bus_master1").mkdir(parents=True, exist_ok=True)
    d = base / sensor
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return base
