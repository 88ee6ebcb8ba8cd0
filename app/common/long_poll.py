"""Waiting inside a long poll (SQS ``ReceiveMessage``, Step Functions ``GetActivityTask``):
for a wake-up from the live transport when it can be had, on a timer when it cannot (a broker
outage degrades a long poll to re-checking, never to an error). The poll re-checks its store
after each wait, so a lost wake-up costs at most one timer period."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

Listener = AbstractAsyncContextManager[asyncio.Queue[Any]]


@contextlib.asynccontextmanager
async def wake_ups(
    listen: Callable[[], Listener | None],
) -> AsyncIterator[asyncio.Queue[Any] | None]:
    """The wake-ups while a poll waits, or None when ``listen`` gives no listener or it cannot
    be entered within a second."""
    try:
        listening = listen()
        woke = None if listening is None else await asyncio.wait_for(listening.__aenter__(), 1.0)
    except Exception:  # the live transport is down
        listening = woke = None
    if listening is None or woke is None:
        yield None
        return
    try:
        yield woke
    finally:
        await listening.__aexit__(None, None, None)


async def wait(woke: asyncio.Queue[Any] | None, seconds: float) -> None:
    """Until a wake-up or ``seconds``; every wake-up that came meanwhile is consumed, since one
    re-check answers them all."""
    if seconds <= 0:
        return
    if woke is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(woke.get(), timeout=seconds)
    while not woke.empty():
        woke.get_nowait()
