"""Fire what is due: the loop shared by scheduled rules and Scheduler schedules.

The leading scheduler calls a :class:`DueFirer` every 0.2 s (a tick hook). It reads up to
``BATCH`` due items, then fires each in a transaction of its own, where the subclass moves the
item's ``next_fire_at`` on by compare-and-set and stores what the fire produces -- so two firers
never fire one due time twice, and a crash before the commit leaves it due.

**No backfill** (as AWS): a fire more than ``settings.scheduler.misfire_grace_seconds`` late
(60 s by default) is skipped, not fired, and counting resumes from now. A scheduler restart or a
leader takeover (seconds) therefore neither skips nor doubles the tick that fell in it, while a
scheduler that was down for an hour does not put an hour-old tick.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, get_database, utcnow

log = logging.getLogger("smokehouse.scheduler")

#: How many due items one pass fires (the next pass, 0.2 s later, takes the rest).
BATCH = 200


def misfired(tick: datetime, now: datetime, grace_seconds: float) -> bool:
    """Whether ``tick`` is too late to fire at ``now`` (no backfill)."""
    return now - tick > timedelta(seconds=grace_seconds)


class DueFirer(ABC):
    """A tick hook: fire every due item, one transaction each; count what this call fired."""

    interval: float = 0.2
    #: What it fires, for the log ("scheduled rule ticks").
    what: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failing_since: float | None = None

    @abstractmethod
    def due(self, session: Session, now: datetime, limit: int) -> Sequence[tuple[str, datetime]]:
        """``(id, due time)`` of up to ``limit`` items due at ``now``, earliest first."""

    @abstractmethod
    def fire(self, session: Session, item_id: str, tick: datetime, now: datetime) -> bool:
        """Fire (or, misfired, skip) ``item_id``'s ``tick`` in the caller's transaction;
        whether this call fired it (not another firer, not a skip)."""

    def fire_due(self, db: Database, now: datetime | None = None) -> int:
        now = now or utcnow()
        with db.session() as session:
            due = list(self.due(session, now, BATCH))
        fired = 0
        for item_id, tick in due:
            with db.session() as session:
                fired += self.fire(session, item_id, tick, now)
        return fired

    def __call__(self, celery: Any) -> int:
        try:
            fired = self.fire_due(get_database(self.settings.sqlalchemy_url))
        except Exception as exc:  # database away: the items stay due; say so once
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                log.warning(
                    "cannot fire %s (retrying every %.1f s): %s", self.what, self.interval, exc
                )
            return 0
        if self.failing_since is not None:
            log.info(
                "firing %s again after %.1f s", self.what, time.monotonic() - self.failing_since
            )
            self.failing_since = None
        if fired:
            log.info("fired %d %s", fired, self.what)
        return fired
