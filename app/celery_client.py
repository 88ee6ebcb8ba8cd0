"""The app layer's handle on Celery: one client app per Settings in a process, made on first use.

Services send tasks after their commit (deliveries, workflow steps, queue messages, alarm
notifications) through this one app, so a process keeps one broker connection pool, not one per
module. It is configured by :mod:`app.broker.celery` (imported lazily: it loads Celery).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from app.config import Settings


@cache
def celery_for(settings: Settings) -> Any:
    from app.broker.celery import create_celery

    return create_celery(settings)
