"""Work the leading scheduler does between its ticks (the autoscaler's 0→N wake-up).

A registry without Celery in it, so :mod:`app.wiring` (imported by every process, the API
included) can fill it without loading Celery's beat; :mod:`app.broker.beat` runs the hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class TickHook(Protocol):
    """Work the leading scheduler does between ticks, every ``interval`` seconds (the
    autoscaler's 0→N wake-up): a callable taking the Celery app."""

    interval: float

    def __call__(self, celery: Any) -> object: ...


#: Filled by :mod:`app.wiring` with factories taking the Settings.
TICK_HOOKS: list[Callable[[Any], TickHook]] = []


def register_tick_hook(factory: Callable[[Any], TickHook]) -> None:
    if factory not in TICK_HOOKS:
        TICK_HOOKS.append(factory)
