"""Parse ``SMOKEHOUSE_MQTT_URL`` and build paho clients from it, so every MQTT user agrees.

Shared plumbing, not IoT: ingest, the live fan-out (:mod:`app.realtime`), the bus's MQTT target
and the health probes all connect through it, so it sits beside :mod:`app.db` where each can
import it without importing another domain.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    #: ``mqtts://…?ca_file=/path/ca.crt``: trust this CA (e.g. ``smokehouse tls init``'s) instead
    #: of the system store.
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        tls = parts.scheme in ("mqtts", "ssl")
        ca_file = parse_qs(parts.query).get("ca_file", [""])[0] or None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ca_file=ca_file if tls else None,
        )


def make_client(endpoint: MqttEndpoint, client_id: str = "", *, v5: bool = False) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(ca_certs=endpoint.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    return client


class BackgroundClient:
    """A paho client that connects in the background and reconnects by itself (its network
    loop runs in a thread); ``connected`` says whether it is up right now. The bus's MQTT target
    and the embedded live fan-out publish through one of these each."""

    def __init__(
        self, url: str, client_id: str, *, max_reconnect_delay: int = 10, v5: bool = False
    ) -> None:
        self.pid = os.getpid()  # a forked child must make its own: the loop thread is not copied
        self.endpoint = MqttEndpoint.from_url(url)
        self.where = f"{self.endpoint.host}:{self.endpoint.port}"
        self.v5 = v5
        self.connected = threading.Event()
        self.client = make_client(self.endpoint, client_id, v5=v5)
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


# --- which MQTT does the broker speak? ----------------------------------------------------------
# Mosquitto speaks MQTT 5; the embedded amqtt broker only 3.1.1. A bare MQTT 5 CONNECT tells them
# apart without guessing: a 3.1.1-only broker answers with the 3.1.1 CONNACK "unacceptable
# protocol version" (``20 02 00 01``), an MQTT 5 broker with an MQTT 5 CONNACK (even one refusing
# our credentials). The probe sends no credentials and a clean start, so it leaves no session.

V311_REFUSAL = b"\x20\x02\x00\x01"


def _connect_packet(client_id: str) -> bytes:
    ident = client_id.encode()
    variable = b"\x00\x04MQTT" + b"\x05" + b"\x02" + b"\x00\x0a" + b"\x00"
    payload = len(ident).to_bytes(2, "big") + ident
    body = variable + payload
    assert len(body) < 128  # one-byte remaining length
    return b"\x10" + bytes([len(body)]) + body


def speaks_v5(host: str, port: int, timeout: float = 3.0) -> bool:
    """True unless the broker answered an MQTT 5 CONNECT with a 3.1.1 protocol refusal.
    Raises ``OSError`` when the broker cannot be reached (the caller retries)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_connect_packet(f"smokehouse-probe-{uuid.uuid4().hex[:12]}"))
        answer = b""
        try:
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        if answer[:2] == b"\x20\x02" or answer == V311_REFUSAL:
            return False  # a 3.1.1 CONNACK: only 3.1.1 spoken here
        if not answer:
            # Closed without a word: old brokers do this to protocol levels they do not know.
            return False
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return True
