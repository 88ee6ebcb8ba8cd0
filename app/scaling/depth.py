"""Queue depth probes: how many messages wait (ready) and how many are taken but not acked.

* **Redis** — ``LLEN`` of the queue list and its priority sub-lists (ready), and the ``unacked``
  hash counted per queue by routing key (reserved or running: Celery's ``acks_late`` keeps a
  message there until the task finished).
* **RabbitMQ** — a passive ``queue_declare``: ready messages and consumers. RabbitMQ does not tell
  unacked counts over AMQP; the registry's ``held`` lists fill that in.
* **SQLite broker** — rows of ``kombu_message`` per queue: visible (or with a lease older than the
  visibility timeout: they will be taken again) are ready, the others are leased.

A queue the broker never saw has depth zero.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.scaling.brokers import UNACKED, broker_kind, redis_queue_keys, sqlite_path_url


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    ready: int
    unacked: int | None  # None: this broker cannot say
    consumers: int | None = None

    @property
    def total(self) -> int:
        return self.ready + (self.unacked or 0)


DEFAULT_VISIBILITY_TIMEOUT = 3600.0


def probe(
    broker_url: str,
    queues: Sequence[str],
    *,
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    now: datetime | None = None,
) -> dict[str, QueueDepth]:
    """Depth of each of ``queues`` on the broker at ``broker_url``."""
    kind = broker_kind(broker_url)
    if kind == "redis":
        return probe_redis(broker_url, queues)
    if kind == "amqp":
        return probe_rabbitmq(broker_url, queues)
    return probe_sqlite(broker_url, queues, visibility_timeout=visibility_timeout, now=now)


def probe_redis(url: str, queues: Sequence[str]) -> dict[str, QueueDepth]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for key in redis_queue_keys(queue):
                    pipe.llen(key)
            pipe.hvals(UNACKED)
            results = pipe.execute()
    finally:
        client.close()
    unacked: Counter[str] = Counter()
    for raw in results[-1]:
        try:
            _payload, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        unacked[str(routing_key)] += 1
    steps = len(redis_queue_keys(""))
    depths: dict[str, QueueDepth] = {}
    for index, queue in enumerate(queues):
        ready = sum(int(n) for n in results[index * steps : (index + 1) * steps])
        depths[queue] = QueueDepth(queue, ready=ready, unacked=unacked[queue])
    return depths


def probe_rabbitmq(url: str, queues: Sequence[str]) -> dict[str, QueueDepth]:
    from kombu.connection import Connection

    depths: dict[str, QueueDepth] = {}
    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            for queue in queues:
                try:
                    _name, ready, consumers = channel.queue_declare(queue=queue, passive=True)
                except connection.channel_errors:  # 404: the broker closed the channel
                    channel = connection.channel()
                    depths[queue] = QueueDepth(queue, ready=0, unacked=None, consumers=0)
                    continue
                depths[queue] = QueueDepth(
                    queue, ready=int(ready), unacked=None, consumers=int(consumers)
                )
        finally:
            channel.close()
    return depths


def probe_sqlite(
    url: str,
    queues: Sequence[str],
    *,
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    now: datetime | None = None,
) -> dict[str, QueueDepth]:
    from sqlalchemy import create_engine, inspect, text

    # The broker stores naive UTC timestamps (see app.broker.sqlite).
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    stale = now - timedelta(seconds=visibility_timeout)
    engine = create_engine(sqlite_path_url(url), connect_args={"timeout": 10})
    counts: dict[str, list[int]] = {q: [0, 0] for q in queues}
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("kombu_message"):
                return {q: QueueDepth(q, 0, 0) for q in queues}
            rows = connection.execute(
                text(
                    "SELECT q.name, (m.visible = 1 OR m.timestamp < :stale) AS ready, COUNT(*) "
                    "FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
                    "GROUP BY q.name, ready"
                ),
                {"stale": stale.isoformat(sep=" ")},
            )
            for name, ready, count in rows:
                if name in counts:
                    counts[name][0 if ready else 1] += int(count)
    finally:
        engine.dispose()
    return {q: QueueDepth(q, ready=r, unacked=u) for q, (r, u) in counts.items()}
