"""Celery beat with a leader: any number of schedulers run, the one holding the lease sends.

Beat keeps its schedule in memory and sends whatever is due; two of them send everything twice,
and a lone one is a single point of failure. ``LeasedScheduler`` ticks only while it holds the
``scheduler`` lease (``app.leases``): it renews every third of
``SMOKEHOUSE_SCHEDULER_LEASE_SECONDS``; standbys try every fifth, so when the leader dies (kill -9,
host loss) one of them sends the next ticks within 1.2 leases. A leader that cannot reach the
database keeps sending only until 80 % of its lease has passed on its own clock, then stands by:
by then a standby may lead.

Why a leased beat and not RedBeat: the lease lives in the database every role already shares
(PostgreSQL, or SQLite in embedded mode), so it works with every broker (Redis, RabbitMQ, the
embedded one) and the same table fences the tasks themselves (``app.broker.singleton``). What a
takeover can cause — a tick sent by both for an instant, or every due task sent at once by the new
leader — is absorbed there: each periodic task runs under its own lease and is a sweep. For the
same reason the schedule is kept in memory, not in a file per host (several schedulers on one
host would share it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import Scheduler

from app.broker.tick_hooks import TICK_HOOKS
from app.db import get_database
from app.leases import Lease, acquire, holder_id, release, renew

log = logging.getLogger("smokehouse.scheduler")

LEASE = "scheduler"


class LeasedScheduler(Scheduler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from app.broker.celery import settings_of

        settings = settings_of(kwargs["app"] if "app" in kwargs else args[0])
        self.database_url = settings.sqlalchemy_url
        self.lease_seconds = settings.scheduler.lease_seconds
        self.holder = holder_id(LEASE)
        self.lease: Lease | None = None
        self.valid_until = 0.0
        self.next_check = 0.0
        self.hooks = [factory(settings) for factory in TICK_HOOKS]
        self.hooks_due = [0.0] * len(self.hooks)
        super().__init__(*args, **kwargs)

    def leads(self) -> bool:
        """Whether this scheduler holds the lease now (checking the database when it is due)."""
        now = time.monotonic()
        if now >= self.next_check:
            database = get_database(self.database_url)
            try:
                lease = renew(database, self.lease, self.lease_seconds) if self.lease else None
                lease = lease or acquire(database, LEASE, self.holder, self.lease_seconds)
            except Exception as exc:  # database away: lead on until the lease may have lapsed
                log.warning("could not check the scheduler lease: %s", exc)
                lease = self.lease if now < self.valid_until else None
            else:
                self.valid_until = now + 0.8 * self.lease_seconds if lease else 0.0
            if lease is not None and self.lease is None:
                log.info(
                    "this scheduler leads: it sends the periodic tasks (token %d)", lease.token
                )
            elif lease is None and self.lease is not None:
                log.warning("this scheduler lost its lease: standing by")
            self.lease = lease
            self.next_check = now + self.lease_seconds / (3 if lease else 5)
        return self.lease is not None and time.monotonic() < self.valid_until

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.leads():
            return max(self.next_check - time.monotonic(), 0.05)
        interval = float(super().tick(*args, **kwargs))
        wake = self.next_check
        for index, hook in enumerate(self.hooks):
            now = time.monotonic()
            if now >= self.hooks_due[index]:
                try:
                    hook(self.app)
                except Exception:  # a hook never stops the ticks
                    log.exception("scheduler hook %r failed", hook)
                self.hooks_due[index] = now + hook.interval
            wake = min(wake, self.hooks_due[index])
        return max(min(interval, wake - time.monotonic()), 0.05)

    def close(self) -> None:
        super().close()
        if self.lease is not None:
            try:
                release(get_database(self.database_url), self.lease)
            except Exception as exc:  # it lapses by itself
                log.warning("could not release the scheduler lease: %s", exc)
            self.lease = None
