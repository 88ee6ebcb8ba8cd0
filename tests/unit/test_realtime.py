"""The fan-out's local half, without a broker: a hub hands each message to every subscriber
of its channel, a slow subscriber loses its oldest messages (never blocks the others), and
bad input is dropped and counted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from app import realtime


class LocalHub(realtime._Hub):
    """A hub whose broker side does nothing: what ``add``/``remove`` ask of it is recorded."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.calls: list[str] = []

    async def _subscribe(self, channel: str) -> None:
        self.calls.append(f"sub {channel}")

    async def _unsubscribe(self, channel: str) -> None:
        self.calls.append(f"unsub {channel}")

    async def _close(self) -> None:
        self.calls.append("close")


def dropped(reason: str) -> float:
    value: float = realtime.DROPPED.labels(reason=reason)._value.get()
    return value


def test_fan_out_subscribe_once_and_close_with_the_last() -> None:
    async def scenario() -> tuple[list[Any], list[str]]:
        hub = LocalHub(asyncio.get_running_loop())
        a: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10)
        b: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10)
        other: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10)
        await hub.add("readings:1", a)
        await hub.add("readings:1", b)
        await hub.add("readings:2", other)
        hub.dispatch("readings:1", json.dumps({"n": 1}))
        hub.dispatch("readings:3", json.dumps({"n": 3}))  # nobody listens
        got = [a.get_nowait(), b.get_nowait(), other.empty()]
        await hub.remove("readings:1", a)
        await hub.remove("readings:1", b)
        await hub.remove("readings:2", other)
        await hub.remove("readings:2", other)  # twice: harmless
        return got, hub.calls

    got, calls = asyncio.run(scenario())
    assert got == [{"n": 1}, {"n": 1}, True]
    assert calls == [
        "sub readings:1",
        "sub readings:2",
        "unsub readings:1",
        "unsub readings:2",
        "close",
    ]


def test_a_slow_subscriber_loses_its_oldest_messages() -> None:
    async def scenario() -> list[int]:
        hub = LocalHub(asyncio.get_running_loop())
        slow: asyncio.Queue[dict[str, Any]] = asyncio.Queue(3)
        await hub.add("c", slow)
        for n in range(5):
            hub.dispatch("c", json.dumps({"n": n}).encode())
        return [slow.get_nowait()["n"] for _ in range(3)]

    before = dropped("slow_subscriber")
    assert asyncio.run(scenario()) == [2, 3, 4]
    assert dropped("slow_subscriber") - before == 2


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"\xff"])
def test_bad_payloads_are_dropped(payload: bytes) -> None:
    async def scenario() -> bool:
        hub = LocalHub(asyncio.get_running_loop())
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(3)
        await hub.add("c", queue)
        hub.dispatch("c", payload)
        return queue.empty()

    assert asyncio.run(scenario())


@pytest.mark.parametrize("channel", ["", "a+b", "a#", "x\x00", "c" * 201])
def test_invalid_channels(channel: str) -> None:
    with pytest.raises(ValueError, match="invalid live channel"):
        realtime._check(channel)
