"""Parse ``SMOKEHOUSE_MQTT_URL`` and build paho clients from it, so every MQTT user agrees.

Shared plumbing, not IoT: ingest, the live fan-out (:mod:`app.realtime`), the bus's MQTT target
and the health probes all connect through it, so it sits beside :mod:`app.db` where each can
import it without importing another domain.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def make_client(endpoint: MqttEndpoint, client_id: str = "", *, v5: bool = False) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    return client


class BackgroundClient:
    """A paho client that connects in the background and reconnects by itself (its network
    loop runs in a thread); ``connected`` says whether it is up right now. The bus's MQTT target
    and the embedded live fan-out publish through one of these each."""

    def __init__(self, url: str, client_id: str, *, max_reconnect_delay: int = 10) -> None:
        self.pid = os.getpid()  # a forked child must make its own: the loop thread is not copied
        self.endpoint = MqttEndpoint.from_url(url)
        self.where = f"{self.endpoint.host}:{self.endpoint.port}"
        self.connected = threading.Event()
        self.client = make_client(self.endpoint, client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max_reconnect_delay)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _reason: object, _p: object
    ) -> None:
        self.connected.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def probe(endpoint: MqttEndpoint, timeout: float = 2.0) -> None:
    """Complete an MQTT CONNECT/CONNACK handshake, or raise ``ConnectionError`` saying why."""
    client = make_client(endpoint)
    connected = threading.Event()
    outcome: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        outcome.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=10)
        client.loop_start()
        if not connected.wait(timeout):
            raise ConnectionError(f"no CONNACK from {endpoint.host}:{endpoint.port}")
        if outcome[0] != "Success":
            raise ConnectionError(f"broker refused the connection: {outcome[0]}")
    except OSError as exc:
        raise ConnectionError(f"{endpoint.host}:{endpoint.port}: {exc}") from exc
    finally:
        client.disconnect()
        client.loop_stop()
