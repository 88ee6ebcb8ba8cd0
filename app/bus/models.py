"""The event bus's tables.

A delivery row per (event, rule, target) and an attempt row per try (saleor's shape): the delivery
is the outbox — a lost broker message is found again by the sweeper — and the attempts are the
audit trail. Targets are stored as the AWS ``Target`` structure itself (``spec``) so PutTargets and
ListTargetsByRule round-trip exactly; a delivery snapshots the target it was matched with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UtcDateTime, utcnow


class EventBus(Base):
    __tablename__ = "event_buses"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Bumped in the same transaction as any rule/target change: compiled matchers cached in other
    # processes notice they are stale by comparing this number.
    revision: Mapped[int] = mapped_column(Integer, default=0)


class Rule(Base):
    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("bus_name", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bus_name: Mapped[str] = mapped_column(
        ForeignKey("event_buses.name", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    event_pattern: Mapped[str | None] = mapped_column(Text)
    schedule_expression: Mapped[str | None] = mapped_column(String(256))
    #: A scheduled rule's next tick (``app.bus.scheduled``); NULL for pattern rules.
    next_fire_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    #: The region the rule was put in (its ARN in a Scheduled Event); NULL: the configured one.
    region: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), default="ENABLED")
    description: Mapped[str | None] = mapped_column(String(512))
    role_arn: Mapped[str | None] = mapped_column(String(1600))
    managed_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    targets: Mapped[list[Target]] = relationship(
        back_populates="rule",
        cascade="all, delete-orphan",
        order_by="Target.position",
        lazy="selectin",
    )


class Target(Base):
    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("rule_id", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[str] = mapped_column(String(64))
    arn: Mapped[str] = mapped_column(String(1600))
    position: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)

    rule: Mapped[Rule] = relationship(back_populates="targets")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_bus_time", "bus_name", "time"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bus_name: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(256))
    detail_type: Mapped[str] = mapped_column(String(256))
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    replay_name: Mapped[str | None] = mapped_column(String(64))
    matched_rules: Mapped[int] = mapped_column(Integer, default=0)


class Delivery(Base):
    """One event to one target: pending → succeeded | dead (dead-lettered); redrive resets it."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "rule_id", "target_id"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    bus_name: Mapped[str] = mapped_column(String(256))
    rule_id: Mapped[str] = mapped_column(String(36), index=True)
    rule_name: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))
    target_arn: Mapped[str] = mapped_column(String(1600))
    target_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)

    attempt_log: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="delivery",
        cascade="all, delete-orphan",
        order_by="DeliveryAttempt.number",
        lazy="raise",
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # succeeded | retry | failed
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_log")


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(36))
    bus_name: Mapped[str] = mapped_column(String(256))
    rule_name: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))
    error_code: Mapped[str] = mapped_column(String(64))
    error_message: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    redriven_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Archive(Base):
    __tablename__ = "archives"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    bus_name: Mapped[str] = mapped_column(ForeignKey("event_buses.name", ondelete="CASCADE"))
    event_pattern: Mapped[str | None] = mapped_column(Text)
    retention_days: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str | None] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(32), default="ENABLED")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ArchivedEvent(Base):
    __tablename__ = "archived_events"
    __table_args__ = (Index("ix_archived_events_window", "archive_name", "time"),)

    archive_name: Mapped[str] = mapped_column(
        ForeignKey("archives.name", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    size: Mapped[int] = mapped_column(Integer)


class Replay(Base):
    __tablename__ = "replays"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    archive_name: Mapped[str] = mapped_column(String(48))
    destination_bus: Mapped[str] = mapped_column(String(256))
    filter_rules: Mapped[list[str] | None] = mapped_column(JSON)
    event_start_time: Mapped[datetime] = mapped_column(UtcDateTime())
    event_end_time: Mapped[datetime] = mapped_column(UtcDateTime())
    description: Mapped[str | None] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(32), default="STARTING")
    state_reason: Mapped[str | None] = mapped_column(String(512))
    replay_start_time: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    replay_end_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_replayed_time: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Connection(Base):
    """Auth for API destinations. Secrets live here (AWS keeps them in Secrets Manager)."""

    __tablename__ = "connections"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36))
    description: Mapped[str | None] = mapped_column(String(512))
    authorization_type: Mapped[str] = mapped_column(String(32))
    auth_parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(32), default="AUTHORIZED")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_modified_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiDestination(Base):
    __tablename__ = "api_destinations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36))
    description: Mapped[str | None] = mapped_column(String(512))
    connection_name: Mapped[str] = mapped_column(
        ForeignKey("connections.name", ondelete="RESTRICT")
    )
    endpoint: Mapped[str] = mapped_column(String(2048))
    http_method: Mapped[str] = mapped_column(String(8))
    invocation_rate_limit_per_second: Mapped[int] = mapped_column(Integer, default=300)
    state: Mapped[str] = mapped_column(String(32), default="ACTIVE")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_modified_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
