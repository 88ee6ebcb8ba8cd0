"""Put a dead worker's messages back on their queues now, not after the visibility timeout.

Celery runs with ``acks_late``, so whatever a worker took and did not finish is still "unacked" on
the broker. The broker gives it back on its own only after ``visibility_timeout`` (an hour here, so
long tasks are not run twice). Once the registry knows the worker is dead, waiting is pointless:

* **Redis** — per delivery tag, in one ``WATCH``/``MULTI`` transaction (as kombu's
  ``restore_by_tag``): read the ``unacked`` entry, drop it from ``unacked`` and ``unacked_index``,
  mark it redelivered and ``RPUSH`` it onto its queue's priority list — the end ``BRPOP`` takes
  from, so it runs next.
* **SQLite broker** — make the worker's leased rows visible again.
* **RabbitMQ** — nothing to do: the broker requeues a consumer's unacked messages as soon as its
  connection closes.

Returns how many messages were put back. Safe to repeat: a tag already restored or acked is gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.scaling.brokers import (
    BINDING,
    SEP,
    UNACKED,
    UNACKED_INDEX,
    broker_kind,
    redis_key_for,
    sqlite_path_url,
)
from app.scaling.registry import HeldMessage


def restore(broker_url: str, held: Sequence[HeldMessage]) -> int:
    if not held:
        return 0
    kind = broker_kind(broker_url)
    if kind == "redis":
        return restore_redis(broker_url, held)
    if kind == "sqlite":
        return restore_sqlite(broker_url, held)
    return 0


def _redis_queues(client: Any, exchange: str, routing_key: str, fallback: str) -> list[str]:
    """kombu's ``_lookup`` for direct exchanges: queues bound with this routing key."""
    queues: list[str] = []
    if exchange:
        for member in client.smembers(BINDING % exchange):
            rk, _pattern, queue = member.decode().split(SEP, 2)
            if rk == routing_key and queue:
                queues.append(queue)
    return queues or [fallback]


def _restore_one(client: Any, message: HeldMessage) -> bool:
    found: list[bool] = []

    def transaction(pipe: Any) -> None:
        found.clear()
        raw = pipe.hget(UNACKED, message.tag)
        queues: list[str] = []
        payload: dict[str, Any] = {}
        if raw:
            payload, exchange, routing_key = json.loads(raw)
            queues = _redis_queues(pipe, exchange, routing_key, message.queue)
            payload.setdefault("headers", {})["redelivered"] = True
            info = payload.setdefault("properties", {}).setdefault("delivery_info", {})
            info["redelivered"] = True
        pipe.multi()
        pipe.zrem(UNACKED_INDEX, message.tag)
        pipe.hdel(UNACKED, message.tag)
        for queue in queues:
            pipe.rpush(redis_key_for(queue, payload), json.dumps(payload))
        found.append(bool(raw))

    client.transaction(transaction, UNACKED)
    return any(found)


def restore_redis(url: str, held: Sequence[HeldMessage]) -> int:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return sum(_restore_one(client, message) for message in held)
    finally:
        client.close()


def restore_sqlite(url: str, held: Sequence[HeldMessage]) -> int:
    """Expire the leases of the held delivery tags: the rows become visible at once."""
    from sqlalchemy import create_engine, inspect, text

    tags = {m.tag for m in held}
    engine = create_engine(sqlite_path_url(url), connect_args={"timeout": 10})
    try:
        with engine.begin() as connection:
            if not inspect(connection).has_table("kombu_message"):
                return 0
            # Leased rows are few (workers x prefetch): parse them rather than LIKE the payload.
            leased = text("SELECT id, payload FROM kombu_message WHERE visible = 0")
            rows = connection.execute(leased)
            ids = []
            for row_id, payload in rows:
                try:
                    tag = json.loads(payload)["properties"]["delivery_tag"]
                except (ValueError, KeyError, TypeError):
                    continue
                if tag in tags:
                    ids.append(int(row_id))
            for row_id in ids:
                connection.execute(
                    text("UPDATE kombu_message SET visible = 1 WHERE id = :id AND visible = 0"),
                    {"id": row_id},
                )
            return len(ids)
    finally:
        engine.dispose()
