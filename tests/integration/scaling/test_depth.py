"""Depth probes against real brokers: ready vs taken-but-unacked, per queue, priorities included."""

from __future__ import annotations

import pytest

from app.scaling.depth import QueueDepth, probe
from app.scaling.recovery import restore
from app.scaling.registry import HeldMessage
from tests.integration.scaling.kombu_helpers import drain, publish, take_and_die

pytestmark = pytest.mark.integration


def test_unknown_queue_is_empty(leasing_broker: str, queue_name: str) -> None:
    assert probe(leasing_broker, [queue_name]) == {
        queue_name: QueueDepth(queue_name, ready=0, unacked=0)
    }


def test_ready_and_unacked_are_counted_per_queue(leasing_broker: str, queue_name: str) -> None:
    other = queue_name + "-other"
    publish(leasing_broker, queue_name, [1, 2, 3])
    publish(leasing_broker, queue_name, [4, 5], priority=7)  # Redis: the "\x06\x166" list
    publish(leasing_broker, other, [6])
    take_and_die(leasing_broker, queue_name, 2)
    depths = probe(leasing_broker, [queue_name, other])
    assert depths[queue_name] == QueueDepth(queue_name, ready=3, unacked=2)
    assert depths[other] == QueueDepth(other, ready=1, unacked=0)
    drain(leasing_broker, other)


def test_stale_sqlite_lease_counts_as_ready(sqlite_broker: str, queue_name: str) -> None:
    publish(sqlite_broker, queue_name, [1])
    take_and_die(sqlite_broker, queue_name, 1)
    assert probe(sqlite_broker, [queue_name], visibility_timeout=3600)[queue_name].unacked == 1
    assert probe(sqlite_broker, [queue_name], visibility_timeout=0)[queue_name].ready == 1


def test_a_dead_consumers_messages_are_restored_at_once(
    leasing_broker: str, queue_name: str
) -> None:
    publish(leasing_broker, queue_name, [{"n": 1}, {"n": 2}, {"n": 3}])
    tags = take_and_die(leasing_broker, queue_name, 2)
    held = [HeldMessage(tag, queue_name, f"task-{i}") for i, tag in enumerate(tags)]
    assert restore(leasing_broker, held) == 2
    assert probe(leasing_broker, [queue_name])[queue_name] == QueueDepth(queue_name, 3, 0)
    assert sorted(b["n"] for b in drain(leasing_broker, queue_name)) == [1, 2, 3]  # type: ignore[index]
    assert restore(leasing_broker, held) == 0  # idempotent: nothing left to restore


def test_restored_redis_message_keeps_its_priority_list(redis_broker: str, queue_name: str) -> None:
    import redis

    publish(redis_broker, queue_name, ["urgent"], priority=9)
    [tag] = take_and_die(redis_broker, queue_name, 1)
    client = redis.Redis.from_url(redis_broker)
    try:
        assert client.llen(queue_name + "\x06\x169") == 0
        restore(redis_broker, [HeldMessage(tag, queue_name, "t")])
        assert client.llen(queue_name + "\x06\x169") == 1
        assert client.hget("unacked", tag) is None
        assert client.zscore("unacked_index", tag) is None
    finally:
        client.close()
    assert drain(redis_broker, queue_name) == ["urgent"]


def test_rabbitmq_reports_ready_and_consumers(rabbitmq_broker: str, queue_name: str) -> None:
    from kombu.connection import Connection

    from tests.integration.scaling.kombu_helpers import kombu_queue

    assert probe(rabbitmq_broker, [queue_name])[queue_name].ready == 0
    publish(rabbitmq_broker, queue_name, [1, 2, 3])
    try:
        depth = probe(rabbitmq_broker, [queue_name])[queue_name]
        assert (depth.ready, depth.consumers, depth.unacked) == (3, 0, None)
    finally:
        with Connection(rabbitmq_broker) as connection:
            kombu_queue(queue_name)(connection.channel()).delete()
