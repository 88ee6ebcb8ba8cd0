"""``arn:smokehouse:mqtt:<topic>``: publish the rendered input to an MQTT topic.

The IoT Core "republish" action as a bus target: a rule can push an alarm to a display, or echo
a command back to the Pi. Optional ``MqttParameters: {"Qos": 0 | 1, "Retain": bool}`` (QoS 1 and
no retain by default). With QoS 1 the attempt succeeds only once the broker's PUBACK came back,
so a broker that is down or slow makes a retryable failure, never a silent loss. (A message
whose PUBACK came too late may still be delivered by the client after the retry is sent: at least
once, like every target.)

MQTT 5 whenever the broker speaks it (Mosquitto; the embedded amqtt broker speaks only 3.1.1), so
the PUBACK carries a reason code: one of 0x80 and above (0x87 Not authorized when Mosquitto's ACL
refuses the topic) fails the attempt with ``MqttRefused`` — final for a refusal that another
attempt can't change (not authorized, bad topic or payload, too large), retried otherwise. Over
3.1.1 Mosquitto acknowledges a refused publish like any other and drops it: it was recorded
delivered and lost.

One connected client per broker URL per process, created lazily and shared by threads; a forked
child (Celery prefork) notices it is not the creator and connects its own.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session

from app.bus.targets.base import DeliveryContext, TargetFailure
from app.mqtt import BackgroundClient, MqttEndpoint, speaks_v5

PREFIX = "arn:smokehouse:mqtt:"
TIMEOUT_SECONDS = 5.0
MAX_TOPIC_BYTES = 65535
#: PUBACK reason codes another attempt won't change: Not authorized, Topic Name invalid, Packet
#: too large, Payload format invalid. (0x80 Unspecified, 0x83 Implementation specific and 0x97
#: Quota exceeded are retried.)
FINAL_REASONS = frozenset({0x87, 0x90, 0x95, 0x99})


def topic_problem(topic: str) -> str | None:
    if not topic:
        return "the topic is empty"
    if "+" in topic or "#" in topic:
        return "a topic to publish to can't contain the wildcards '+' or '#'"
    if "\x00" in topic:
        return "a topic can't contain NUL"
    if topic.startswith("$"):
        return "topics starting with '$' are reserved for the broker"
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        return f"a topic is at most {MAX_TOPIC_BYTES} bytes"
    return None


def mqtt_parameters(spec: dict[str, Any]) -> tuple[int, bool]:
    given = spec.get("MqttParameters") or {}
    return int(given.get("Qos", 1)), bool(given.get("Retain", False))


class Publisher:
    """The target's connection to one broker, shared by every delivery in the process. It asks
    the broker which MQTT it speaks on first use, then keeps one background client."""

    def __init__(self, url: str) -> None:
        self.pid = os.getpid()
        self.url = url
        self.endpoint = MqttEndpoint.from_url(url)
        self.where = f"{self.endpoint.host}:{self.endpoint.port}"
        self.client_id = f"smokehouse-bus-{uuid.uuid4().hex[:12]}"
        self._connection: BackgroundClient | None = None
        self._lock = threading.Lock()
        #: PUBACK reason per message id, set by paho's network thread before it marks the message
        #: published; a later message with the same id overwrites it before it is read.
        self._reasons: dict[int, ReasonCode] = {}

    @property
    def v5(self) -> bool | None:
        """Whether this publisher speaks MQTT 5 (None: not connected yet)."""
        return None if self._connection is None else self._connection.v5

    def _connect(self, timeout: float) -> BackgroundClient:
        with self._lock:
            if self._connection is None:
                try:
                    v5 = self.endpoint.tls or speaks_v5(
                        self.endpoint.host, self.endpoint.port, timeout=min(timeout, 3.0)
                    )
                except OSError as exc:
                    raise TargetFailure(
                        f"MQTT broker {self.where} is not reachable: {exc}",
                        retryable=True,
                        code="MqttUnavailable",
                    ) from None
                connection = BackgroundClient(
                    self.url, self.client_id, max_reconnect_delay=5, v5=v5
                )
                connection.client.on_publish = self._on_publish
                self._connection = connection
            return self._connection

    def _on_publish(self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        self._reasons[mid] = reason

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, timeout: float) -> None:
        where = self.where
        connection = self._connect(timeout)
        if not connection.connected.wait(timeout):
            raise TargetFailure(
                f"MQTT broker {where} is not reachable", retryable=True, code="MqttUnavailable"
            )
        info = connection.client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
            published = info.is_published()
        except (RuntimeError, ValueError) as exc:
            raise TargetFailure(
                f"MQTT publish to {topic} failed: {exc}", retryable=True, code="MqttError"
            ) from exc
        if not published:
            raise TargetFailure(
                f"no PUBACK from {where} for {topic} within {timeout:g} s",
                retryable=True,
                code="MqttTimeout",
            )
        reason = self._reasons.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            raise TargetFailure(
                f"the MQTT broker {where} refused the publish to {topic}: "
                f"{reason.getName()} (0x{reason.value:02x})",
                retryable=reason.value not in FINAL_REASONS,
                code="MqttRefused",
            )

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


_publishers: dict[str, Publisher] = {}
_publishers_lock = threading.Lock()


def publisher_for(url: str) -> Publisher:
    with _publishers_lock:
        publisher = _publishers.get(url)
        if publisher is None or publisher.pid != os.getpid():
            publisher = _publishers[url] = Publisher(url)
        return publisher


def close_publishers() -> None:
    """Disconnect every client of this process (tests, shutdown)."""
    with _publishers_lock:
        for publisher in _publishers.values():
            if publisher.pid == os.getpid():
                publisher.close()
        _publishers.clear()


class MqttTarget:
    kind = "mqtt"

    def accepts(self, arn: str) -> bool:
        return arn.startswith(PREFIX)

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        problem = topic_problem(spec["Arn"].removeprefix(PREFIX))
        if problem is not None:
            return f"Target ARN {spec['Arn']} is not a valid MQTT target: {problem}."
        given = spec.get("MqttParameters")
        if given is None:
            return None
        if not isinstance(given, dict) or set(given) - {"Qos", "Retain"}:
            return "MqttParameters accepts only Qos (0 or 1) and Retain (true or false)."
        if given.get("Qos", 1) not in (0, 1) or isinstance(given.get("Qos"), bool):
            return "MqttParameters.Qos must be 0 or 1."
        if not isinstance(given.get("Retain", False), bool):
            return "MqttParameters.Retain must be true or false."
        return None

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        topic = context.spec["Arn"].removeprefix(PREFIX)
        problem = topic_problem(topic)
        if problem is not None:
            raise TargetFailure(problem, retryable=False, code="BadTopic")
        qos, retain = mqtt_parameters(context.spec)
        publisher = publisher_for(context.settings.effective_mqtt_url)
        publisher.publish(topic, payload.encode(), qos, retain, TIMEOUT_SECONDS)
        return None
