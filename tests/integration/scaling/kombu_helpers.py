"""Publish and take messages with plain kombu, in this process or in one that dies holding them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from tests.services import ROOT

TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "polling_interval": 0.1}


def kombu_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def publish(url: str, queue: str, bodies: Sequence[object], priority: int | None = None) -> None:
    """Publish and return once the broker has the messages: RabbitMQ routes an unconfirmed
    publish asynchronously, so its queue counts could lag behind (publisher confirms)."""
    options = {**TRANSPORT_OPTIONS, "confirm_publish": url.startswith(("amqp", "pyamqp"))}
    with Connection(url, transport_options=options) as connection:
        producer = connection.Producer()
        for body in bodies:
            producer.publish(
                body,
                exchange=kombu_queue(queue).exchange,
                routing_key=queue,
                declare=[kombu_queue(queue)],
                priority=priority,
                serializer="json",
            )


def take_and_die(url: str, queue: str, count: int) -> list[str]:
    """A separate process takes ``count`` messages without acking and exits hard (``os._exit``):
    kombu gets no chance to restore them, exactly as with ``kill -9``. Returns delivery tags."""
    script = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
import app.broker.sqlite
from kombu import Connection
from tests.integration.scaling.kombu_helpers import TRANSPORT_OPTIONS, kombu_queue
with Connection({url!r}, transport_options=TRANSPORT_OPTIONS) as connection:
    channel = connection.channel()
    queue = kombu_queue({queue!r})(channel)
    tags = []
    for _ in range({count}):
        message = queue.get(no_ack=False)
        assert message is not None, "queue empty"
        tags.append(message.delivery_tag)
    print(json.dumps(tags), flush=True)
    os._exit(0)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    tags: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return tags


def drain(url: str, queue: str, limit: int = 100) -> list[object]:
    """Take and ack everything ready on ``queue``."""
    bodies: list[object] = []
    with Connection(url, transport_options=TRANSPORT_OPTIONS) as connection:
        channel = connection.channel()
        bound = kombu_queue(queue)(channel)
        for _ in range(limit):
            message = bound.get(no_ack=False)
            if message is None:
                break
            bodies.append(message.payload)
            message.ack()
    return bodies
