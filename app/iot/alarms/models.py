"""Alarm tables: the alarms users see, and the evaluator state that lets them survive restarts.

``uq_iot_alarms_open`` is a partial unique index: at most one alarm per (device, probe, kind)
that is not cleared, so a redelivered batch or two workers racing cannot open a second one.
Device-level alarms (``device_offline``) have no probe; the index keys them on ``''``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

ALARM_KINDS = (
    "target_reached",
    "high",
    "low",
    "pit_range",
    "probe_open",
    "device_offline",
    "stall",
)
ALARM_STATES = ("open", "acknowledged", "cleared")
#: The ``probe_id`` column of evaluator state rows for the device itself.
DEVICE_SCOPE = ""


class Alarm(Base):
    """One alarm, from the moment its condition started to the moment it cleared."""

    __tablename__ = "iot_alarms"
    __table_args__ = (
        Index(
            "uq_iot_alarms_open",
            "device_id",
            func.coalesce(text("probe_id"), text("''")),
            "kind",
            unique=True,
            postgresql_where=text("cleared_at IS NULL"),
            sqlite_where=text("cleared_at IS NULL"),
        ),
        Index("ix_iot_alarms_device_opened_at", "device_id", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"))
    probe_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    #: ``open``, ``acknowledged`` (still active, no more notifications) or ``cleared``.
    state: Mapped[str] = mapped_column(String(16), default="open")
    message: Mapped[str] = mapped_column(String(500))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    silenced_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    #: When the open/clear notification went out (``None``: not yet, or not wanted).
    open_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    clear_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    #: One entry per handled transition: ``{action, at, outcome, targets}``, the targets masked
    #: (Apprise's privacy mode) -- the history shows where, never a token.
    notifications: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class AlarmEvaluatorState(Base):
    """The evaluator's memory of one probe (or of the device, ``probe_id = ''``) as JSON: what
    is active, recent samples for rates and stalls, the last reading time (redelivery guard)."""

    __tablename__ = "iot_alarm_states"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("iot_devices.id", ondelete="CASCADE"), primary_key=True
    )
    probe_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
