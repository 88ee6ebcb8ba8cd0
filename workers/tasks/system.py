"""System tasks: the end-to-end ping (API or scheduler → broker → worker → database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.db import get_database, utcnow
from app.system.service import record_ping
from workers.celery_app import celery_app, settings_of


@celery_app.task(name="system.ping", bind=True)
def ping(self: Any, sent_at: str | None = None) -> str:
    """Record that a worker received a ping; the task id makes a redelivery a no-op."""
    settings = settings_of(celery_app)
    sent = datetime.fromisoformat(sent_at) if sent_at else utcnow()
    with get_database(settings.sqlalchemy_url).session() as session:
        record_ping(session, self.request.id, sent, worker=self.request.hostname or "unknown")
    return str(self.request.id)
