"""Tables of the thermometer: devices and their probes, cooks, readings, and what ingest refused.

Readings are the big table: one row per probe per message, written in batches, read by time
range (``ix_readings_device_probe_ts``). ``uq_readings_device_seq_probe`` makes a redelivered
message a no-op (``INSERT … ON CONFLICT DO NOTHING``); ``ingested_messages`` is ingest's own
(device, seq) dedupe, so a message redelivered by the broker is not put on the bus twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime

PROBE_STATUSES = ("ok", "open", "short", "error")
PROBE_ROLES = ("pit", "food", "ambient")
DEVICE_STATES = ("online", "offline")

#: SQLite's INTEGER PRIMARY KEY is its rowid (autoincrement); PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Device(Base):
    """A thermometer. ``id`` is the ``<device_id>`` of its MQTT topics and payloads."""

    __tablename__ = "iot_devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The MQTT username Mosquitto knows it by (its password lives only in the passwd file).
    mqtt_username: Mapped[str] = mapped_column(String(128), unique=True)
    #: Apprise URLs (ntfy://…, tgram://…, mailto://…) that its alarms notify.
    notify_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    home_assistant_discovery: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``online``/``offline`` from the retained status topic (LWT), ``None`` until first heard.
    availability: Mapped[str | None] = mapped_column(String(16), nullable=True)
    availability_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Probe(Base):
    """One probe of a device, created the first time a reading names it; its settings are the
    user's (name, role, calibration, target and alarm thresholds), its ``last_*`` are the latest
    reading's."""

    __tablename__ = "iot_probes"
    __table_args__ = (UniqueConstraint("device_id", "probe_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"))
    probe_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="food")
    calibration_offset_c: Mapped[float] = mapped_column(Float, default=0.0)
    target_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    high_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    low_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: A pit probe's setpoint; the pit-range alarm watches ``setpoint ± pit_band_c``.
    setpoint_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    pit_band_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_temp_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_rate_c_per_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_ts: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Cook(Base):
    """A cook session: opened when data arrives for a device with none open, closed after
    ``SMOKEHOUSE_IOT_COOK_IDLE_SECONDS`` (30 min) of silence or by hand."""

    __tablename__ = "iot_cooks"
    __table_args__ = (Index("ix_iot_cooks_device_started_at", "device_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_reading_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    #: ``auto`` (data arrived / silence) or ``manual`` (startCook/endCook).
    started_by: Mapped[str] = mapped_column(String(16), default="auto")
    ended_by: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Reading(Base):
    """One probe's temperature from one message (calibrated; ``raw_temp_c`` as sent)."""

    __tablename__ = "iot_readings"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", "probe_id", name="uq_readings_device_seq_probe"),
        Index("ix_readings_device_probe_ts", "device_id", "probe_id", "ts"),
        Index("ix_readings_cook_ts", "cook_id", "ts"),
        Index("ix_readings_ts", "ts"),  # the retention purge
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    probe_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    cook_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    temp_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    raw_temp_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    rate_c_per_min: Mapped[float | None] = mapped_column(Float, nullable=True)


class ReadingRollup(Base):
    """Readings of one probe summed per 10 s (epoch-aligned), kept where readings are stored so
    a long range is downsampled from ~10x fewer rows; ``n``/``sum_c``/``min_c``/``max_c`` cover
    the non-null temperatures, ``first_ts`` every reading (a bucket of open probes has n = 0)."""

    __tablename__ = "iot_readings_rollup"
    __table_args__ = (Index("ix_readings_rollup_bucket_start", "bucket_start"),)

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    probe_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    sum_c: Mapped[float] = mapped_column(Float)
    min_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_ts: Mapped[datetime] = mapped_column(UtcDateTime())


class IngestedMessage(Base):
    """(device, seq) pairs ingest has put on the bus: a broker redelivery is dropped here."""

    __tablename__ = "iot_ingested_messages"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class IngestDeadLetter(Base):
    """A message ingest refused (bad JSON, schema, impossible values, unknown device, forged
    topic, too big): kept for a person to look at, never stored as a reading."""

    __tablename__ = "iot_dead_letters"
    __table_args__ = (Index("ix_iot_dead_letters_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    topic: Mapped[str] = mapped_column(String(512))
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: ``not_json``, ``schema``, ``not_finite``, ``impossible``, ``too_large``,
    #: ``unknown_device``, ``topic_mismatch``, ``unprocessable`` (the database refused it).
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(1024))
    #: The first 4 KiB of the payload, as text (bytes that are not UTF-8 or NUL escaped).
    payload: Mapped[str] = mapped_column(Text)
    #: The message's exact bytes (up to the payload limit), for a redrive.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    redriven_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
