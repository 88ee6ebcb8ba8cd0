"""How a scheduled activity task wakes the ``GetActivityTask`` long polls waiting for it.

The live transport (:mod:`app.realtime`: Redis pub/sub, or the MQTT broker in embedded mode)
sits above the workflows in the layering, so the workflows cannot import it: :mod:`app.wiring`
registers it here (:func:`register`). Without one, polls still find their tasks, by re-checking
the table every :data:`~app.workflows.activities.api.RECHECK_SECONDS`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from app.config import Settings

log = logging.getLogger("smokehouse.workflows")

Publish = Callable[[Settings, str, dict[str, Any]], None]
Listen = Callable[[Settings, str], AbstractAsyncContextManager[Any]]

_transport: tuple[Publish, Listen] | None = None


def register(publish: Publish, listen: Listen) -> None:
    """Plug in the live transport: ``publish(settings, channel, message)`` never raises,
    ``listen(settings, channel)`` is an async context yielding an ``asyncio.Queue`` that sees
    every message published after it was entered."""
    global _transport
    _transport = (publish, listen)


def channel(activity_arn: str) -> str:
    """The activity's wake-up channel: a digest, since a name may hold ``+`` (an MQTT
    wildcard) and the ARN may be longer than a channel may be."""
    return "sfn-activity:" + hashlib.sha256(activity_arn.encode()).hexdigest()[:40]


def notify(settings: Settings, activity_arns: list[str]) -> None:
    """Wake the polls of these activities (after the commit that made their tasks available);
    never raises: a lost wake-up costs a poll one re-check interval."""
    if _transport is None:
        return
    publish = _transport[0]
    for arn in dict.fromkeys(activity_arns):
        try:
            publish(settings, channel(arn), {})
        except Exception as exc:  # pragma: no cover - publish itself never raises
            log.warning("could not wake the pollers of %s (%s)", arn, exc)


def listener(settings: Settings, activity_arn: str) -> AbstractAsyncContextManager[Any] | None:
    """The wake-ups of an activity while a poll waits, or None without a transport."""
    if _transport is None:
        return None
    return _transport[1](settings, channel(activity_arn))
