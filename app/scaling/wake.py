"""The 0→N wake-up for the scheduler's path: a queue with no worker gets a pass at once.

The autoscaler's own loop (``smokehouse scaling run``) probes depth every 0.25 s and passes a queue
the moment it goes from empty to non-empty. Deployments that drive the autoscaler from the
scheduler's periodic ``scaling.autoscale`` (every 10 s) would make the first message of an idle
queue wait up to 10 s for a worker to be started. This check runs in the scheduler that leads
(``app.broker.beat`` hook, registered by :mod:`app.wiring`): the same cheap probe, and on a
wake it sends ``scaling.autoscale`` now. The pass itself is a singleton under its lease, so a
wake that coincides with the periodic pass costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from app.config import Settings
from app.db import get_database
from app.scaling.depth import QueueDepth, probe
from app.scaling.sources import pool_depths

log = logging.getLogger("smokehouse.scaling")

AUTOSCALE_TASK = "scaling.autoscale"
#: Backends the periodic task drives (``process`` workers are children of ``scaling run``).
DRIVEN_BY_THE_SCHEDULER = ("docker", "kubernetes")


class WakeCheck:
    """Called by the leading scheduler every ``interval``; sends a pass on empty → non-empty."""

    interval = 0.25

    def __init__(
        self,
        settings: Settings,
        depth_probe: Callable[[str, Sequence[str]], dict[str, QueueDepth]] = probe,
    ) -> None:
        self.settings = settings
        self.probe = depth_probe
        self.was_empty: dict[str, bool] = {}

    def __call__(self, celery: Any) -> bool:
        """One check; whether it sent a pass."""
        scaling = self.settings.scaling
        if scaling.backend not in DRIVEN_BY_THE_SCHEDULER:
            return False
        try:
            depths = pool_depths(
                self.probe,
                self.settings.celery_broker_url,
                get_database(self.settings.sqlalchemy_url),
                scaling,
                scaling.queue_list,
            )
        except Exception as exc:  # the broker is away: the periodic pass will do
            log.debug("wake-up probe failed: %s", exc)
            return False
        woken = []
        for queue, depth in depths.items():
            empty = depth.total == 0
            if self.was_empty.get(queue, True) and not empty:
                woken.append(queue)
            self.was_empty[queue] = empty
        if woken:
            log.info("queue %s got work: autoscaler pass now", ", ".join(woken))
            celery.send_task(AUTOSCALE_TASK)
        return bool(woken)
