"""The ingest process: a paho-mqtt subscriber, a bounded queue and one batching thread.

* paho's network thread only **enqueues** (``on_message`` never touches the database).
* the batching thread takes up to ``batch_max_messages`` (or what arrived within
  ``batch_max_wait_seconds`` of the first), writes them in one transaction
  (:func:`app.iot.ingest.batch.write_batch`), commits (which enqueues the bus deliveries the
  batch registered on its unit of work), and only then acknowledges the messages (paho
  ``manual_ack``). A crash anywhere before the ack makes the broker redeliver, and (device, seq)
  dedupe drops what was already put on the bus.
* MQTT 5 with a persistent session (clean start off, session expiry) and the shared subscription
  ``$share/<group>/smokehouse/+/telemetry``, so several ingest processes split the load; status
  topics are subscribed plainly (shared subscriptions get no retained messages). A broker that only
  speaks 3.1.1 (the embedded amqtt) gets 3.1.1 with ``clean_session=False`` and plain subscriptions.

Acks carry the connection's generation: a message received before a reconnect is not acked with
a packet id that belongs to the old connection; the broker redelivers it and dedupe drops it.

**Poison messages.** A batch that fails is looked at before it is retried. A *transient* failure
(the database is down, locked, restarting: :func:`app.db.is_transient`) is retried with a
backoff growing to 10 s, nothing is acked meanwhile, and ``smokehouse_iot_store_failing_seconds``
grows, which ``smokehouse health ingest`` reports. Any other failure is the data's: the batch is
split in halves and each half written on its own, down to the one message that fails, which is
dead-lettered (kind ``unprocessable``, its exact bytes and the error kept, redrivable) and acked
with the rest. One bad message costs a few extra transactions, never the batch or the process.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import get_database, is_transient, utcnow
from app.iot.ingest.batch import BatchResult, Incoming, dead_letter, write_batch
from app.iot.ingest.metrics import (
    BATCH_SECONDS,
    MESSAGES,
    REJECTED,
    STORE_FAILING_SECONDS,
    RateLimitedLog,
)
from app.iot.ingest.protocol import speaks_v5
from app.iot.ingest.telemetry import Rejection, parse_topic
from app.iot.settings import IotSettings
from app.mqtt import MqttEndpoint

log = logging.getLogger("smokehouse.iot.ingest")

T = TypeVar("T")

TELEMETRY_TOPIC = "smokehouse/+/telemetry"
STATUS_TOPIC = "smokehouse/+/status"


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    received_at: datetime
    mid: int
    qos: int
    generation: int
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class IngestStats:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    batches: int = 0
    acked: int = 0
    dropped: int = 0
    connects: int = 0


def default_client_id() -> str:
    return f"smokehouse-ingest-{socket.gethostname()}"[:64]


class Ingestor:
    """One ingest process's MQTT client and batching thread: ``start()``, then ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        iot: IotSettings,
        *,
        client_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.iot = iot
        self.endpoint = MqttEndpoint.from_url(settings.effective_mqtt_url)
        self.client_id = client_id or iot.client_id or default_client_id()
        self.clock = clock
        self.stats = IngestStats()
        self.v5 = True
        self.refusals = RateLimitedLog()
        self._queue: queue.Queue[Received] = queue.Queue(maxsize=iot.queue_size)
        self._generation = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._client: mqtt.Client | None = None
        self._batcher: threading.Thread | None = None
        self._failing_since: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Find out which MQTT the broker speaks (waiting for it), connect, start batching."""
        self.v5 = self._probe_protocol()
        if self._stopping.is_set():
            return
        if not self.v5:
            log.warning(
                "the MQTT broker at %s:%d speaks MQTT 3.1.1 only (the embedded amqtt broker?): "
                "using 3.1.1 with a persistent session and plain subscriptions — run one ingest "
                "process only",
                self.endpoint.host,
                self.endpoint.port,
            )
        self._client = self._make_client()
        self._batcher = threading.Thread(target=self._batch_loop, name="ingest-batcher")
        self._batcher.start()
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.iot.session_expiry_seconds
            properties.ReceiveMaximum = self.iot.receive_maximum
        self._client.connect_async(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=30,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()

    def request_stop(self) -> None:
        """Signal-safe: ask ``start`` (still probing) and the batching thread to stop."""
        self._stopping.set()

    def wait_connected(self, timeout: float) -> bool:
        """Connected and subscribed (the broker acknowledged the subscriptions)."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (it is acked), leave the rest to the broker's redelivery."""
        self._stopping.set()
        if self._batcher is not None:
            self._batcher.join(timeout)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        log.info(
            "ingest stopped: %d accepted, %d duplicates, %d refused",
            self.stats.accepted,
            self.stats.duplicates,
            self.stats.rejected,
        )

    def _probe_protocol(self) -> bool:
        if self.endpoint.tls:
            return True  # the embedded broker has no TLS: a TLS broker is a real one
        delay = self.iot.reconnect_min_seconds
        while not self._stopping.is_set():
            try:
                return speaks_v5(self.endpoint.host, self.endpoint.port)
            except OSError as exc:
                log.warning(
                    "MQTT broker %s:%d not reachable (%s); retrying in %.1f s",
                    self.endpoint.host,
                    self.endpoint.port,
                    exc,
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, self.iot.reconnect_max_seconds)
        return True

    def _make_client(self) -> mqtt.Client:
        if self.v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if self.endpoint.username:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            client.tls_set(ca_certs=self.endpoint.ca_file)
        client.max_inflight_messages_set(self.iot.receive_maximum)
        cast(Any, client).reconnect_delay_set(
            min_delay=self.iot.reconnect_min_seconds, max_delay=self.iot.reconnect_max_seconds
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # -- paho callbacks (network thread: never block) ---------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("the MQTT broker refused ingest's connection: %s", reason)
            return
        self._generation += 1
        self.stats.connects += 1
        if self.v5:
            group = self.iot.share_group
            client.subscribe(
                [
                    (f"$share/{group}/{TELEMETRY_TOPIC}", SubscribeOptions(qos=1)),
                    (STATUS_TOPIC, SubscribeOptions(qos=1)),
                ]
            )
        else:
            client.subscribe([(TELEMETRY_TOPIC, 1), (STATUS_TOPIC, 1)])
        log.info(
            "ingest connected to %s:%d as %s (MQTT %s, session %s)",
            self.endpoint.host,
            self.endpoint.port,
            self.client_id,
            "5" if self.v5 else "3.1.1",
            "resumed" if flags.session_present else "new",
        )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("the MQTT broker refused ingest's subscriptions: %s", ", ".join(refused))
            return
        log.info("ingest subscribed")  # tests wait for this line, not for a fixed delay
        self._connected.set()  # only now does a published reading reach us

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("ingest lost the MQTT broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        item = Received(
            message.topic,
            bytes(message.payload),
            self.clock(),
            message.mid,
            message.qos,
            self._generation,
        )
        try:
            self._queue.put_nowait(item)
        except queue.Full:  # not acked: the broker redelivers it after the next reconnect
            self.stats.dropped += 1
            self.refusals.refused("queue_full", message.topic, "ingest's queue is full")

    # -- batching thread ---------------------------------------------------------------------

    def _batch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            # From when the first message arrived, not from when we got to it: one that came in
            # while the previous batch was being written has waited already.
            deadline = first.arrived + self.iot.batch_max_wait_seconds
            while len(batch) < self.iot.batch_max_messages:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
            self._handle(batch)

    def _handle(self, batch: list[Received]) -> None:
        result = self._write(batch)
        if result is None:
            return  # stopping before the batch could be written: the broker redelivers it
        # Committed, and its deliveries enqueued by the commit: now the broker may forget them.
        self._count(result)
        client = self._client
        assert client is not None
        for item in batch:
            if item.qos and item.generation == self._generation:
                client.ack(item.mid, item.qos)
                self.stats.acked += 1

    def _write(self, batch: list[Received]) -> BatchResult | None:
        """Write the batch (split around poison); ``None`` if stopping before it was written."""
        items = [Incoming(r.topic, r.payload, r.received_at) for r in batch]
        try:
            return self._store(items)
        except _Stopping:
            return None  # the broker redelivers what was not acked

    def _store(self, items: list[Incoming]) -> BatchResult:
        try:
            return self._retrying(
                lambda session: write_batch(session, self.settings, self.iot, items, self.clock())
            )
        except _Poison as poison:
            if len(items) == 1:
                return self._set_aside(items[0], poison.error)
        middle = len(items) // 2
        return _merged([self._store(items[:middle]), self._store(items[middle:])])

    def _set_aside(self, item: Incoming, error: BaseException) -> BatchResult:
        """Dead-letter the one message the database refuses, so it and its batch get acked."""
        reason = f"the database refused it: {type(error).__name__}: {_first_line(error)}"
        parsed = parse_topic(item.topic)
        rejection = Rejection("unprocessable", reason, parsed[0] if parsed else None)
        log.error("ingest set a message on %s aside: %s", item.topic[:200], reason)
        try:
            self._retrying(
                lambda session: session.add(
                    dead_letter(item, rejection, self.iot.max_payload_bytes)
                )
            )
        except _Poison as poison:  # cannot even be kept: logged whole, then acked
            log.critical(
                "ingest dropped a message it could neither store nor dead-letter (%s); "
                "topic %r, payload %r",
                _first_line(poison.error),
                item.topic[:512],
                item.payload[:4096],
            )
        return BatchResult(rejected=[(rejection, item.topic)])

    def _retrying(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction until it commits; transient failures back off and
        retry (nothing acked), any other raises :class:`_Poison`; :class:`_Stopping` if asked to
        stop while waiting."""
        database = get_database(self.settings.sqlalchemy_url)
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                with database.session() as session:
                    result = work(session)
                BATCH_SECONDS.observe(time.perf_counter() - started)
                self._failing_since = None
                STORE_FAILING_SECONDS.set(0)
                return result
            except Exception as exc:
                if not is_transient(exc):
                    raise _Poison(exc) from exc
                now = time.monotonic()
                self._failing_since = self._failing_since or now
                STORE_FAILING_SECONDS.set(now - self._failing_since)
                log.error(
                    "could not store ingest's batch (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    _first_line(exc),
                    delay,
                )
                if self._stopping.wait(delay):
                    raise _Stopping from exc
                delay = min(delay * 2, 10.0)

    def _count(self, result: BatchResult) -> None:
        self.stats.batches += 1
        self.stats.accepted += result.accepted
        self.stats.duplicates += result.duplicates
        self.stats.statuses += result.statuses
        self.stats.rejected += len(result.rejected)
        MESSAGES.labels("accepted").inc(result.accepted)
        MESSAGES.labels("duplicate").inc(result.duplicates)
        MESSAGES.labels("status").inc(result.statuses)
        MESSAGES.labels("rejected").inc(len(result.rejected))
        for rejection, topic in result.rejected:
            REJECTED.labels(rejection.kind).inc()
            self.refusals.refused(rejection.kind, topic, rejection.reason)


class _Poison(Exception):
    """A write failed for a reason retrying will not fix (see :func:`app.db.is_transient`)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Stopping(Exception):
    """Asked to stop while a write was waiting to be retried."""


def _merged(results: list[BatchResult]) -> BatchResult:
    merged = BatchResult()
    for result in results:
        merged.accepted += result.accepted
        merged.duplicates += result.duplicates
        merged.statuses += result.statuses
        merged.rejected.extend(result.rejected)
    return merged


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0][:300] if text else ""
