"""Schedule groups and schedules (EventBridge Scheduler)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime, utcnow


class ScheduleGroup(Base):
    __tablename__ = "schedule_groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The creating request's ``ClientToken``: its resend gets the same answer.
    client_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("group_name", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    expression: Mapped[str] = mapped_column(String(256))
    timezone: Mapped[str] = mapped_column(String(50), default="UTC")
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime())
    description: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="ENABLED")
    flexible_window: Mapped[dict[str, Any]] = mapped_column(JSON)
    action_after_completion: Mapped[str] = mapped_column(String(16), default="NONE")
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    kms_key_arn: Mapped[str | None] = mapped_column(String(2048))
    region: Mapped[str] = mapped_column(String(32))
    #: When the next fire is due (a flexible window's random offset included); NULL: none left.
    next_fire_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    #: The creating request's ``ClientToken``: its resend gets the same answer.
    client_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
