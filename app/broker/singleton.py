"""Periodic tasks are singletons: one run at a time across every worker, under a lease.

The scheduler's leader sends each periodic task once per interval, but a pass can outlast its
interval, a standby scheduler can send one just as it takes over, and an operator can send one by
hand. Every task the beat schedule names (but the ping) therefore runs under the lease
``task:<name>`` (``app.leases``): a run that finds it held is skipped and logged, a run whose
worker dies frees it ``SMOKEHOUSE_SCHEDULER_LEASE_SECONDS`` later. Skipping is safe because the
next tick comes: periodic tasks are sweeps that pick up whatever is due.

Celery makes every task of the app from this class (``task_cls``), so no task module has to
remember a decorator.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from app.db import get_database
from app.leases import held, holder_id

log = logging.getLogger("smokehouse.scheduler")


class SingletonTask(Task):  # type: ignore[misc]
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from app.broker.celery import SINGLETON_TASKS, settings_of

        if self.name not in SINGLETON_TASKS:
            return super().__call__(*args, **kwargs)
        settings = settings_of(self.app)
        database = get_database(settings.sqlalchemy_url)
        ttl = settings.scheduler.lease_seconds
        with held(database, f"task:{self.name}", holder_id(self.name), ttl) as holding:
            if holding is None:
                log.info("%s skipped: another run of it holds its lease", self.name)
                return None
            return super().__call__(*args, **kwargs)
