"""Live fan-out for GraphQL subscriptions: readings and alarms pushed to every subscriber.

Contract (callers rely on it):

* ``publish(settings, channel, message)`` — fire-and-forget, JSON-able ``message``; never raises
  into the caller (a lost live update is caught up by the client's query, not retried here).
  ``publish_many`` does the same for a batch in one round trip.
* ``subscribe(settings, channel)`` — an async iterator of messages published after it started.

Channels: ``readings:<device_id>``, ``alarms:<device_id>`` (and ``alarms`` for every device).

Transport. The publishers are Celery workers and the subscribers live in the API process, so an
in-process queue cannot carry a message between them, even in embedded mode. Hence:

* ``SMOKEHOUSE_REDIS_URL`` set (production): Redis pub/sub, channel ``smokehouse:live:<channel>``.
* otherwise: the MQTT broker every mode already runs (the embedded amqtt broker, or
  ``SMOKEHOUSE_MQTT_URL``), topic ``smokehouse/_live/<channel>``, QoS 0. It needs no extra
  server and pushes (no polling delay); QoS 0 matches pub/sub's at-most-once.

Each process keeps **one** connection per transport: publishers share a lazily made client
(per process id, so a forked Celery child makes its own); all subscribers of an event loop
share one hub that subscribes a channel on the broker while it has local subscribers and fans
each message out to their bounded queues (a slow subscriber loses its oldest messages, never
blocks the others). The hub closes its connection when its last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
import redis
import redis.asyncio as aioredis
from prometheus_client import Counter

from app.config import Settings
from app.mqtt import BackgroundClient, MqttEndpoint, make_client

log = logging.getLogger("smokehouse.realtime")

REDIS_PREFIX: Final = "smokehouse:live:"
MQTT_PREFIX: Final = "smokehouse/_live/"
QUEUE_SIZE: Final = 1000
#: After a failed publish the transport is skipped this long (dropped and counted), so a
#: broker outage costs the hot path one timeout, not one per message.
BACKOFF_SECONDS: Final = 5.0
CONNECT_SECONDS: Final = 1.0

PUBLISHED = Counter(
    "smokehouse_realtime_published_total", "Live messages published.", ["transport"]
)
DROPPED = Counter(
    "smokehouse_realtime_dropped_total",
    "Live messages lost: transport down, bad message, or a subscriber too slow.",
    ["reason"],
)


def transport(settings: Settings) -> str:
    return "redis" if settings.redis_url else "mqtt"


def _check(channel: str) -> str:
    if not channel or any(c in channel for c in "+#\x00") or len(channel) > 200:
        raise ValueError(f"invalid live channel {channel!r}")
    return channel


# --- publishing ---------------------------------------------------------------------------


class _Publisher(Protocol):
    def send(self, items: list[tuple[str, str]]) -> None: ...


class _RedisPublisher:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=CONNECT_SECONDS, socket_connect_timeout=CONNECT_SECONDS
        )

    def send(self, items: list[tuple[str, str]]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for channel, data in items:
                pipe.publish(REDIS_PREFIX + channel, data)
            pipe.execute()


class _MqttPublisher(BackgroundClient):
    def __init__(self, url: str) -> None:
        super().__init__(url, f"smokehouse-live-pub-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.connected.wait(CONNECT_SECONDS)

    def send(self, items: list[tuple[str, str]]) -> None:
        if not self.connected.is_set():
            raise ConnectionError("not connected to the MQTT broker")
        for channel, data in items:
            info = self.client.publish(MQTT_PREFIX + channel, data, qos=0)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(mqtt.error_string(info.rc))


_publishers: dict[tuple[int, str, str], _Publisher] = {}
_down_until: dict[tuple[int, str, str], float] = {}
_publishers_lock = threading.Lock()


def _publisher(settings: Settings) -> tuple[tuple[int, str, str], _Publisher]:
    kind = transport(settings)
    url = settings.redis_url if kind == "redis" else settings.effective_mqtt_url
    assert url is not None
    key = (os.getpid(), kind, url)
    with _publishers_lock:
        found = _publishers.get(key)
        if found is None:
            found = _RedisPublisher(url) if kind == "redis" else _MqttPublisher(url)
            _publishers[key] = found
    return key, found


def publish(settings: Settings, channel: str, message: dict[str, Any]) -> None:
    """Send ``message`` to the channel's subscribers in every process; never raises."""
    publish_many(settings, [(channel, message)])


def publish_many(settings: Settings, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Several messages in one round trip; never raises (a loss is logged and counted)."""
    encoded: list[tuple[str, str]] = []
    for channel, message in items:
        try:
            encoded.append((_check(channel), json.dumps(message, separators=(",", ":"))))
        except (TypeError, ValueError) as exc:
            DROPPED.labels(reason="bad_message").inc()
            log.warning("live message for %r dropped: %s", channel, exc)
    if not encoded:
        return
    kind = transport(settings)
    key: tuple[int, str, str] | None = None
    try:
        key, publisher = _publisher(settings)
        if _down_until.get(key, 0.0) > time.monotonic():
            DROPPED.labels(reason="transport_down").inc(len(encoded))
            return
        publisher.send(encoded)
        PUBLISHED.labels(transport=kind).inc(len(encoded))
    except Exception as exc:  # the hot path never fails for a live update
        if key is not None:
            _down_until[key] = time.monotonic() + BACKOFF_SECONDS
        DROPPED.labels(reason="transport_down").inc(len(encoded))
        log.warning(
            "live fan-out over %s failed (%s); dropping live updates for %.0f s",
            kind,
            exc,
            BACKOFF_SECONDS,
        )


# --- subscribing --------------------------------------------------------------------------


class _Hub:
    """One broker connection per event loop and transport, shared by every local subscriber."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.ready: set[str] = set()  # channels the broker confirmed (or gave up waiting for)
        self.lock = asyncio.Lock()

    def dispatch(self, channel: str, data: bytes | bytearray | str) -> None:
        """In the loop's thread: decode once, hand to every subscriber of the channel."""
        queues = self.queues.get(channel)
        if not queues:
            return
        try:
            message = json.loads(data)
        except ValueError:
            DROPPED.labels(reason="bad_message").inc()
            return
        if not isinstance(message, dict):
            return
        for queue in queues:
            if queue.full():
                queue.get_nowait()
                DROPPED.labels(reason="slow_subscriber").inc()
            queue.put_nowait(message)

    async def add(self, channel: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        async with self.lock:
            first = channel not in self.queues
            self.queues.setdefault(channel, set()).add(queue)
            if first:
                await self._subscribe(channel)
                self.ready.add(channel)

    async def remove(self, channel: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        async with self.lock:
            queues = self.queues.get(channel)
            if queues is None:
                return
            queues.discard(queue)
            if queues:
                return
            del self.queues[channel]
            self.ready.discard(channel)
            await self._unsubscribe(channel)
            if not self.queues:
                await self._close()

    async def _subscribe(self, channel: str) -> None:
        raise NotImplementedError

    async def _unsubscribe(self, channel: str) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError


class _RedisHub(_Hub):
    def __init__(self, loop: asyncio.AbstractEventLoop, url: str) -> None:
        super().__init__(loop)
        self.url = url
        self.client: aioredis.Redis | None = None
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.confirmed: dict[str, asyncio.Future[None]] = {}

    async def _connect(self) -> None:
        self.client = aioredis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_SECONDS)
        self.pubsub = self.client.pubsub()

    async def _subscribe(self, channel: str) -> None:
        confirmed = self.loop.create_future()
        self.confirmed[channel] = confirmed
        try:
            if self.pubsub is None:
                await self._connect()
            await self.pubsub.subscribe(REDIS_PREFIX + channel)
            if self.reader is None:
                self.reader = self.loop.create_task(self._read())
            await asyncio.wait_for(asyncio.shield(confirmed), 5.0)
        except Exception as exc:  # Redis down: the reader reconnects and resubscribes
            log.warning("live subscription to %s not confirmed yet: %s", channel, exc)
            if self.reader is None:
                self.reader = self.loop.create_task(self._read())
        finally:
            self.confirmed.pop(channel, None)

    async def _unsubscribe(self, channel: str) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.unsubscribe(REDIS_PREFIX + channel)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live fan-out lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
                await self._reconnect()
                continue
            if message is None:
                continue
            channel = _text(message.get("channel")).removeprefix(REDIS_PREFIX)
            if message["type"] == "subscribe":
                future = self.confirmed.get(channel)
                if future is not None and not future.done():
                    future.set_result(None)
            elif message["type"] == "message":
                self.dispatch(channel, message["data"])

    async def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            if self.client is not None:
                await self.client.aclose()
        try:
            await self._connect()
            if self.queues:
                await self.pubsub.subscribe(*(REDIS_PREFIX + c for c in self.queues))
        except Exception as exc:
            log.warning("live fan-out cannot reach Redis yet: %s", exc)

    async def _close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        with contextlib.suppress(Exception):
            if self.pubsub is not None:
                await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            if self.client is not None:
                await self.client.aclose()
        self.pubsub = self.client = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _MqttHub(_Hub):
    def __init__(self, loop: asyncio.AbstractEventLoop, url: str) -> None:
        super().__init__(loop)
        self.endpoint = MqttEndpoint.from_url(url)
        self.client: mqtt.Client | None = None
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.connected = asyncio.Event()

    def _start(self) -> mqtt.Client:
        client = make_client(self.endpoint, f"smokehouse-live-sub-{os.getpid()}-{id(self):x}")
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 10)
        client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        client.loop_start()
        return client

    # paho callbacks: its network thread; they only hand over to the event loop
    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        for channel in list(self.queues):  # (re)connected: subscribe every channel
            client.subscribe(MQTT_PREFIX + channel, qos=0)
        self.loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, *_: Any) -> None:
        self.loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        channel = message.topic.removeprefix(MQTT_PREFIX)
        self.loop.call_soon_threadsafe(self.dispatch, channel, message.payload)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, *_: Any) -> None:
        self.loop.call_soon_threadsafe(self._acked, mid)

    def _acked(self, mid: int) -> None:
        future = self.acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def _subscribe(self, channel: str) -> None:
        if self.client is None:
            self.client = self._start()
        try:
            await asyncio.wait_for(self.connected.wait(), 5.0)
        except TimeoutError:
            log.warning("live fan-out: MQTT broker not reachable yet; will subscribe on connect")
            return  # ready now: on_connect subscribes every ready channel
        rc, mid = self.client.subscribe(MQTT_PREFIX + channel, qos=0)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return  # lost the connection meanwhile: on_connect subscribes
        future = self.loop.create_future()
        self.acks[mid] = future
        try:
            await asyncio.wait_for(future, 5.0)
        except TimeoutError:
            log.warning("live subscription to %s not acknowledged yet", channel)
        finally:
            self.acks.pop(mid, None)

    async def _unsubscribe(self, channel: str) -> None:
        if self.client is not None:
            self.client.unsubscribe(MQTT_PREFIX + channel)

    async def _close(self) -> None:
        client, self.client = self.client, None
        self.connected.clear()
        if client is not None:

            def stop() -> None:
                client.disconnect()
                client.loop_stop()

            await asyncio.to_thread(stop)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Hub]] = (
    weakref.WeakKeyDictionary()
)


def _hub(settings: Settings) -> _Hub:
    loop = asyncio.get_running_loop()
    kind = transport(settings)
    url = settings.redis_url if kind == "redis" else settings.effective_mqtt_url
    assert url is not None
    hubs = _hubs.setdefault(loop, {})
    found = hubs.get((kind, url))
    if found is None:
        found = _RedisHub(loop, url) if kind == "redis" else _MqttHub(loop, url)
        hubs[(kind, url)] = found
    return found


async def subscribe(settings: Settings, channel: str) -> AsyncGenerator[dict[str, Any]]:
    """Messages published to ``channel`` from the moment the broker confirmed the subscription,
    until the caller stops iterating (cancel or ``aclose``: the subscription is dropped, and
    the connection with the last one)."""
    async with listen(settings, channel) as queue:
        while True:
            yield await queue.get()


@contextlib.asynccontextmanager
async def listen(settings: Settings, channel: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """The queue of messages published to ``channel``, entered once the broker confirmed the
    subscription -- so whatever is published after entering is seen (a waiter checks its
    condition after entering, then waits on the queue, and misses nothing in between)."""
    _check(channel)
    hub = _hub(settings)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
    try:
        await hub.add(channel, queue)
        yield queue
    finally:
        await asyncio.shield(hub.remove(channel, queue))


def active_channels() -> int:
    """Channels with local subscribers in this process whose subscription the broker has
    confirmed (for tests and metrics)."""
    return sum(len(h.ready) for hubs in list(_hubs.values()) for h in hubs.values())
