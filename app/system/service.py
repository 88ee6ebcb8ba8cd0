"""Record pings idempotently: a redelivered task finds its row and changes nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.system.models import Ping


def record_ping(session: Session, ping_id: str, sent_at: datetime, worker: str) -> Ping:
    existing = session.get(Ping, ping_id)
    if existing is not None:
        return existing
    ping = Ping(id=ping_id, sent_at=sent_at, received_at=utcnow(), worker=worker)
    session.add(ping)
    return ping


def last_ping(session: Session) -> Ping | None:
    return session.scalars(select(Ping).order_by(Ping.received_at.desc()).limit(1)).first()
