"""The ``leases`` table: one row per singleton, naming who may act and under which token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # scheduler, task:bus.sweep…
    holder: Mapped[str] = mapped_column(String(200))  # host:pid:nonce of the current holder
    token: Mapped[int] = mapped_column(BigInteger)  # fencing token: +1 at every change of holder
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
