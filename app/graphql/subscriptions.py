"""Subscriptions by polling the database: a cursor per subscription, one short read every
:data:`POLL_SECONDS` on a worker thread, changes yielded as they appear.

Why poll: the rows subscriptions report on (execution history, scaling decisions) are written
by Celery workers and the autoscaler in *other processes*, even in embedded mode, so an
in-process pub/sub in the API would never see them. Polling a cursor (a history event id, a
decision time) needs nothing but the database every process already shares, and misses
nothing that commits. The thermometer's readings and alarms are the exception: they arrive many
times a second, so they are pushed through :mod:`app.realtime` (Redis pub/sub, or the MQTT broker
when embedded) instead of being polled.

Every subscription counts itself in :data:`ACTIVE` (and the ``smokehouse_graphql_active_
subscriptions`` gauge) once its cursor is set, and leaves in ``finally``: a client that
disconnects abruptly cancels the generator at its ``await`` (or closes it at its ``yield``),
either way the count comes back down.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import Final, Protocol, TypeVar

from prometheus_client import Gauge
from sqlalchemy.orm import Session

from app.config import Settings
from app.graphql.context import in_session

T = TypeVar("T")

POLL_SECONDS: Final = 0.5

GAUGE = Gauge(
    "smokehouse_graphql_active_subscriptions",
    "GraphQL subscriptions currently streaming, by field.",
    ["field"],
    multiprocess_mode="livesum",  # several API processes: the sum over the live ones
)
_lock = threading.Lock()
ACTIVE: dict[str, int] = {}


def active_subscriptions(field: str | None = None) -> int:
    """How many subscriptions stream now (of one field, or all)."""
    with _lock:
        return ACTIVE.get(field, 0) if field is not None else sum(ACTIVE.values())


def _count(field: str, delta: int) -> None:
    with _lock:
        ACTIVE[field] = ACTIVE.get(field, 0) + delta
    GAUGE.labels(field=field).inc(delta)


class Poller(Protocol[T]):
    """A cursor over some table: ``baseline`` remembers where things stand (raising to refuse
    the subscription), ``changes`` returns what is new since and moves the cursor."""

    done: bool

    def baseline(self, session: Session) -> None: ...

    def changes(self, session: Session) -> list[T]: ...


async def watch(
    settings: Settings, field: str, poller: Poller[T], interval: float = POLL_SECONDS
) -> AsyncGenerator[T, None]:
    """Yield the poller's changes until it is done or the client goes away."""
    await in_session(settings, poller.baseline)
    _count(field, 1)
    try:
        while True:
            for item in await in_session(settings, poller.changes):
                yield item
            if poller.done:
                return
            await asyncio.sleep(interval)
    finally:
        _count(field, -1)
