"""The app layer's handle on Celery: one client app per Settings in a process, made on first use.

Services send tasks after their commit (deliveries, workflow steps, queue messages, alarm
notifications) through this one app, so a process keeps one broker connection pool, not one per
module. ``workers/`` is imported lazily: importing it configures Celery.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from app.config import Settings


@cache
def celery_for(settings: Settings) -> Any:
    from workers.celery_app import create_celery

    return create_celery(settings)
