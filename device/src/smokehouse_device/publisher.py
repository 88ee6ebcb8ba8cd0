"""MQTT publisher: paho-mqtt 2.x (callback API v2), MQTT v5, TLS, LWT, QoS 1 from the buffer.

Threads:

* paho's network thread (``loop_start``) connects, reconnects and runs the callbacks. Callbacks
  never block: they put an event on a queue and return.
* the **sender** thread owns all delivery state. It publishes buffered readings oldest first,
  keeps at most ``max_inflight`` unacknowledged, maps paho's ``mid`` → buffer row, and deletes a row
  only when its PUBACK arrives.
* the sampling loop (elsewhere) only appends to the SQLite buffer and calls :meth:`notify`; it never
  waits on the network.

After a reconnect paho itself re-sends the messages that were in flight (DUP set) with their old
mids; the sender waits for those to be acknowledged before publishing newer rows, so readings
reach the broker in ``seq`` order (QoS 1 may still duplicate the re-sent ones). A row that is not
acknowledged successfully is retried later, never silently deleted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from smokehouse_device.buffer import ReadingBuffer
from smokehouse_device.readings import status_topic, telemetry_topic

log = logging.getLogger(__name__)

#: MQTT 5 PUBACK reason 0x10: accepted, but no subscription matched (so nobody got it).
NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_inflight: int = 100
    # How long to wait, after a reconnect, for paho's re-sends before publishing from the buffer
    # again anyway (QoS 1 allows the resulting duplicates).
    resend_wait_s: float = 15.0
    # Pause before retrying a reading the broker refused (PUBACK reason code >= 0x80).
    refused_retry_s: float = 30.0
    # Pause before retrying a reading the broker accepted with 0x10 "No matching subscribers":
    # nobody would have received it (the server's ingest was not subscribed at that moment,
    # e.g. right after a broker restart, which does not keep shared subscriptions), so it stays
    # in the buffer and goes again.
    unheard_retry_s: float = 2.0
    # "auto": MQTT 5, or 3.1.1 when the broker answers MQTT 5 with a 3.1.1 refusal (the
    # smokehouse server's embedded amqtt broker speaks only 3.1.1). "5" or "3.1.1" to force one.
    protocol: str = "auto"


@dataclass(frozen=True, slots=True)
class PublisherStats:
    connected: bool
    inflight: int
    published: int
    acked: int
    refused: int
    connects: int


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": uniformly in [d/2, d], d = min(max, min·2^n)."""
    ceiling = min(max_s, min_s * (2 ** min(attempt, 30)))
    return rng.uniform(ceiling / 2, ceiling)


def broker_speaks_v5(host: str, port: int, timeout: float = 3.0) -> bool:
    """Send a bare MQTT 5 CONNECT: a 3.1.1-only broker answers with the 3.1.1 CONNACK
    "unacceptable protocol version" (``20 02 00 01``) or just closes. Unreachable: assume 5."""
    client_id = f"smokehouse-probe-{random.getrandbits(48):012x}".encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x0a\x00" + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"\x10" + bytes([len(body)]) + body)
            answer = b""
            with contextlib.suppress(TimeoutError):
                while len(answer) < 4:
                    chunk = sock.recv(4 - len(answer))
                    if not chunk:
                        break
                    answer += chunk
            if not answer or answer[:2] == b"\x20\x02":
                return False
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return True
    except OSError:
        return True


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    return ctx


@dataclass(slots=True)
class _InFlight:
    row_id: int
    generation: int


class MqttPublisher:
    def __init__(
        self,
        settings: MqttSettings,
        device_id: str,
        buffer: ReadingBuffer,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.device_id = device_id
        self.buffer = buffer
        self.telemetry_topic = telemetry_topic(device_id)
        self.status_topic = status_topic(device_id)
        self._rng = rng or random.Random()
        self._clock = clock
        # (kind, mid, refusal reason or None)
        self._events: queue.SimpleQueue[tuple[str, int, str | None]] = queue.SimpleQueue()
        self._connected_evt = threading.Event()
        self._sender: threading.Thread | None = None
        self._stopping = False
        self._draining = False
        self._attempt = 0
        # Sender-thread state (only the sender thread touches these).
        self._inflight: dict[int, _InFlight] = {}
        self._inflight_rows: set[int] = set()
        self._cursor = 0
        self._generation = 0
        self._connected = False
        self._connected_at = 0.0
        self._pause_until = 0.0
        self._published = 0
        self._acked = 0
        self._refused = 0
        self._connects = 0
        self._v5 = True
        self._client = self._make_client()

    # -- paho setup --------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"smokehouse-device-{self.device_id}",
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
        )
        client.enable_logger(logging.getLogger("smokehouse_device.paho"))
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set_context(tls_context(s))
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(0)  # unbounded; the sender's window keeps it small
        self._set_reconnect_delay(client, s.reconnect_min_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        return client

    @staticmethod
    def _set_reconnect_delay(client: mqtt.Client, delay_s: float) -> None:
        # paho's reconnect_delay_set doubles from min to max; we set both to our own jittered
        # exponential delay before each wait. Its annotation says int; its arithmetic is float-safe.
        cast(Any, client).reconnect_delay_set(min_delay=delay_s, max_delay=delay_s)

    def _schedule_reconnect(self) -> float:
        s = self.settings
        delay = backoff_delay(self._attempt, s.reconnect_min_s, s.reconnect_max_s, self._rng)
        self._attempt += 1
        self._set_reconnect_delay(self._client, delay)
        return delay

    # -- callbacks (network thread; never block) -----------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self._attempt = 0
        client.publish(self.status_topic, "online", qos=1, retain=True)
        log.info("connected to %s:%d", self.settings.host, self.settings.port)
        self._connected_evt.set()
        self._events.put(("connected", 0, None))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected_evt.clear()
        self._events.put(("disconnected", 0, None))
        if self._stopping:
            return
        delay = self._schedule_reconnect()
        log.warning("disconnected (%s); reconnecting in %.1f s", reason_code, delay)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        delay = self._schedule_reconnect()
        log.warning(
            "cannot connect to %s:%d; retrying in %.1f s",
            self.settings.host,
            self.settings.port,
            delay,
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.value == NO_MATCHING_SUBSCRIBERS:
            self._events.put(("unheard", mid, str(reason_code)))
        else:
            self._events.put(("ack", mid, str(reason_code) if reason_code.is_failure else None))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        v5 = s.protocol == "5" or (
            s.protocol == "auto" and (s.tls or broker_speaks_v5(s.host, s.port))
        )
        if not v5:
            log.warning("the broker at %s:%d speaks MQTT 3.1.1 only: using 3.1.1", s.host, s.port)
            self._v5 = False
            self._client = self._make_client()
        if self._v5:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s, clean_start=True)
        else:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._sender_main, name="mqtt-sender", daemon=True)
        self._sender.start()

    def notify(self) -> None:
        """A new reading is in the buffer (cheap, non-blocking)."""
        self._events.put(("new", 0, None))

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_evt.wait(timeout)

    def flush(self, stop: threading.Event, timeout: float) -> bool:
        """Wait until the buffer is empty (everything acknowledged), ``stop`` or ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) and not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.02)
        return len(self.buffer) == 0

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: publish retained ``offline``, collect outstanding acks, disconnect."""
        if self._sender is None:
            return
        self._draining = True  # the sender stops publishing new rows, keeps collecting acks
        deadline = time.monotonic() + timeout
        while self._inflight and self._connected_evt.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._connected_evt.is_set():
            info = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish offline status: %s", exc)
        self._stopping = True
        self._events.put(("stop", 0, None))
        self._sender.join(timeout)
        self._sender = None
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> PublisherStats:
        return PublisherStats(
            connected=self._connected_evt.is_set(),
            inflight=len(self._inflight),
            published=self._published,
            acked=self._acked,
            refused=self._refused,
            connects=self._connects,
        )

    # -- sender thread -----------------------------------------------------------------------

    def _sender_main(self) -> None:
        try:
            while True:
                try:
                    event = self._events.get(timeout=0.5)
                except queue.Empty:
                    event = ("tick", 0, None)
                done: list[int] = []
                stop = self._handle(event, done)
                # Drain whatever else is queued before touching the disk again.
                while not stop:
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        break
                    stop = self._handle(event, done)
                if done:
                    self.buffer.delete(done)
                if stop:
                    return
                self._fill_window()
        except Exception:  # pragma: no cover - a bug; log loudly, the process supervisor restarts
            log.exception("MQTT sender thread crashed")
            raise

    def _handle(self, event: tuple[str, int, str | None], done: list[int]) -> bool:
        kind, mid, refused = event
        if kind == "unheard":
            entry = self._inflight.pop(mid, None)
            if entry is None:
                return False  # a status message: retained, heard by later subscribers
            self._inflight_rows.discard(entry.row_id)
            self._cursor = min(self._cursor, entry.row_id - 1)
            self._pause_until = max(
                self._pause_until, self._clock() + self.settings.unheard_retry_s
            )
            log.warning(
                "no subscriber for reading (row %d): kept, retrying in %.1f s",
                entry.row_id,
                self.settings.unheard_retry_s,
            )
        elif kind == "ack":
            entry = self._inflight.pop(mid, None)
            if entry is None:
                return False  # a status message, or a re-send acked twice
            self._inflight_rows.discard(entry.row_id)
            if refused is None:
                self._acked += 1
                done.append(entry.row_id)
            else:
                self._refused += 1
                self._cursor = min(self._cursor, entry.row_id - 1)
                self._pause_until = self._clock() + self.settings.refused_retry_s
                log.error(
                    "broker refused reading (row %d, %s); retrying in %.1f s",
                    entry.row_id,
                    refused,
                    self.settings.refused_retry_s,
                )
        elif kind == "connected":
            self._generation += 1
            self._connects += 1
            self._connected = True
            self._connected_at = self._clock()
        elif kind == "disconnected":
            self._connected = False
        elif kind == "stop":
            return True
        return False

    def _fill_window(self) -> None:
        if not self._connected or self._draining or self._clock() < self._pause_until:
            return
        stale = [m for m, e in self._inflight.items() if e.generation < self._generation]
        if stale:
            if self._clock() - self._connected_at < self.settings.resend_wait_s:
                return  # paho is re-sending these; keep seq order on the wire
            log.warning("%d re-sent readings not acknowledged; publishing them again", len(stale))
            for mid in stale:
                entry = self._inflight.pop(mid)
                self._inflight_rows.discard(entry.row_id)
                self._cursor = min(self._cursor, entry.row_id - 1)
        while (room := self.settings.max_inflight - len(self._inflight)) > 0:
            rows = self.buffer.fetch_after(self._cursor, room)
            if not rows:
                return
            for row in rows:
                self._cursor = row.row_id
                if row.row_id in self._inflight_rows:
                    continue
                info = self._client.publish(self.telemetry_topic, row.payload, qos=1)
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    log.warning("publish failed (%s); will retry", mqtt.error_string(info.rc))
                    self._cursor = row.row_id - 1
                    return
                # NO_CONN: paho queued it and sends it after the reconnect, like a re-send.
                self._inflight[info.mid] = _InFlight(row.row_id, self._generation)
                self._inflight_rows.add(row.row_id)
                self._published += 1
