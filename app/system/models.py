from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime


class Ping(Base):
    """One end-to-end ping: sent by the API or the scheduler, recorded by a worker."""

    __tablename__ = "pings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    worker: Mapped[str] = mapped_column(String(255))
