"""Live fan-out for GraphQL subscriptions: readings and alarms pushed to every subscriber.

Contract (callers rely on it; the implementation is the iot GraphQL work's):

* ``publish(settings, channel, message)`` — fire-and-forget, JSON-able ``message``; never raises
  into the caller (a lost live update is caught up by the client's query, not retried here).
* ``subscribe(settings, channel)`` — an async iterator of messages published after it started.

Channels: ``readings:<device_id>``, ``alarms:<device_id>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from app.config import Settings


def publish(settings: Settings, channel: str, message: dict[str, Any]) -> None:
    """Placeholder until the fan-out lands: drops the message."""


async def subscribe(settings: Settings, channel: str) -> AsyncIterator[dict[str, Any]]:
    """Placeholder until the fan-out lands: yields nothing."""
    return
    yield {}
