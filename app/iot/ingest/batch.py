"""Write one batch of MQTT messages: refusals dead-lettered, (device, seq) deduped, accepted
telemetry and status changes put on the bus, devices' last-seen and availability updated.

All of it happens in the caller's transaction; the bus deliveries are registered on its unit of
work, so they are enqueued when the caller commits, and the caller acknowledges the messages to
the broker only after that. A message the
broker redelivers after a crash finds its (device, seq) in ``iot_ingested_messages`` and is
acknowledged without a second event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.bus.arns import Scope
from app.bus.envelope import MAX_ENTRIES
from app.bus.events import put_events
from app.config import Settings
from app.db import dialect_insert
from app.iot.ingest.telemetry import (
    Limits,
    Rejection,
    StatusChange,
    Telemetry,
    classify,
    format_ts,
)
from app.iot.models import Device, IngestDeadLetter, IngestedMessage
from app.iot.settings import IotSettings

SOURCE = "smokehouse.iot"
TELEMETRY_BATCH = "Telemetry Batch"
DEVICE_STATUS = "Device Status"
#: Detail bytes per event (EventBridge's limit is 256 KB per request, envelope included).
MAX_DETAIL_BYTES = 200 * 1024
MAX_REQUEST_BYTES = 250 * 1024
DEAD_LETTER_PAYLOAD_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    statuses: int = 0
    rejected: list[tuple[Rejection, str]] = field(default_factory=list)  # (refusal, topic)


def limits_of(iot: IotSettings) -> Limits:
    return Limits(
        max_payload_bytes=iot.max_payload_bytes,
        min_temp_c=iot.min_temp_c,
        max_temp_c=iot.max_temp_c,
        max_future=timedelta(seconds=iot.max_future_seconds),
    )


def chunk_details(messages: Sequence[dict[str, Any]], max_bytes: int) -> Iterator[str]:
    """``{"messages": [...]}`` JSON texts, each at most ``max_bytes`` (one message per event at
    least, so a single huge message still goes through: ingest caps payloads at 128 KB)."""
    current: list[str] = []
    size = len('{"messages": []}')
    for message in messages:
        text = json.dumps(message, separators=(",", ":"))
        if current and size + len(text) + 1 > max_bytes:
            yield '{"messages":[' + ",".join(current) + "]}"
            current, size = [], len('{"messages": []}')
        current.append(text)
        size += len(text) + 1
    if current:
        yield '{"messages":[' + ",".join(current) + "]}"


def requests_of(entries: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """PutEvents requests of at most 10 entries and ``MAX_REQUEST_BYTES``."""
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_bytes = sum(len(entry[k].encode()) for k in ("Source", "DetailType", "Detail"))
        if current and (len(current) == MAX_ENTRIES or size + entry_bytes > MAX_REQUEST_BYTES):
            yield current
            current, size = [], 0
        current.append(entry)
        size += entry_bytes
    if current:
        yield current


def _storable(text: str) -> str:
    """Text any database takes: PostgreSQL's text refuses NUL, so a NUL in a refused payload (or
    in a reason quoting it) would fail the whole batch again and again and wedge ingest. NUL
    becomes U+FFFD, as bytes that are not UTF-8 already do."""
    return text.replace("\x00", "\ufffd")


def escaped(payload: bytes) -> str:
    """A payload as readable text that any database stores: UTF-8 as is, other bytes and NUL
    as ``\\xNN`` escapes (the exact bytes are kept beside it, in ``raw``)."""
    text = payload.decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


def dead_letter(item: Incoming, rejection: Rejection, max_raw_bytes: int) -> IngestDeadLetter:
    """The row that keeps a refused message: its reason, a readable copy, its exact bytes
    (those within the payload limit: a ``too_large`` one is not kept whole)."""
    device_id = rejection.device_id
    return IngestDeadLetter(
        received_at=item.received_at,
        topic=_storable(item.topic[:512]),
        device_id=None if device_id is None else _storable(device_id),
        kind=rejection.kind,
        reason=_storable(rejection.reason[:1024]),
        payload=escaped(item.payload[:DEAD_LETTER_PAYLOAD_CHARS]),
        raw=item.payload if len(item.payload) <= max_raw_bytes else None,
    )


def _create_devices(session: Session, device_ids: Iterable[str], now: datetime) -> None:
    rows = [
        {
            "id": device_id,
            "name": device_id,
            "mqtt_username": device_id,
            "notify_urls": [],
            "home_assistant_discovery": False,
            "created_at": now,
        }
        for device_id in sorted(device_ids)
    ]
    if rows:
        session.execute(dialect_insert(session)(Device).values(rows).on_conflict_do_nothing())


_FIRST_SEEN_POSTGRES = text(
    "INSERT INTO iot_ingested_messages (device_id, seq, received_at) "
    "SELECT d, s, :now FROM unnest(CAST(:devices AS varchar[]), CAST(:seqs AS bigint[])) "
    "AS t(d, s) ON CONFLICT DO NOTHING RETURNING device_id, seq"
)


def _first_seen(
    session: Session, keys: list[tuple[str, int]], now: datetime
) -> set[tuple[str, int]]:
    """Record (device, seq) pairs; return those not recorded before. PostgreSQL: one statement
    with two array parameters (a 500-row VALUES list costs more to compile than to run)."""
    if not keys:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        found = session.execute(
            _FIRST_SEEN_POSTGRES,
            {"devices": [d for d, _ in keys], "seqs": [s for _, s in keys], "now": now},
        )
        return {(row.device_id, row.seq) for row in found}
    statement = (
        dialect_insert(session)(IngestedMessage)
        .values([{"device_id": d, "seq": s, "received_at": now} for d, s in keys])
        .on_conflict_do_nothing(index_elements=["device_id", "seq"])
        .returning(IngestedMessage.device_id, IngestedMessage.seq)
    )
    return {(row.device_id, row.seq) for row in session.execute(statement)}


def write_batch(
    session: Session,
    settings: Settings,
    iot: IotSettings,
    items: Sequence[Incoming],
    now: datetime,
) -> BatchResult:
    """Classify, dead-letter, dedupe and put on the bus; the caller commits."""
    result = BatchResult()
    limits = limits_of(iot)
    classified = [(item, classify(item.topic, item.payload, limits, now)) for item in items]

    named = {c.device_id for _, c in classified if isinstance(c, Telemetry | StatusChange)}
    devices = (
        {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(sorted(named))))}
        if named
        else {}
    )
    missing = named - devices.keys()
    if missing and iot.accepts_unknown(settings):
        _create_devices(session, missing, now)
        devices.update(
            {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(sorted(missing))))}
        )

    telemetry: list[tuple[Incoming, Telemetry]] = []
    statuses: list[tuple[Incoming, StatusChange]] = []
    for item, outcome in classified:
        if isinstance(outcome, Telemetry | StatusChange) and outcome.device_id not in devices:
            outcome = Rejection(
                "unknown_device",
                f"device {outcome.device_id!r} is not provisioned (smokehouse device add)",
                outcome.device_id,
            )
        if isinstance(outcome, Rejection):
            session.add(dead_letter(item, outcome, iot.max_payload_bytes))
            result.rejected.append((outcome, item.topic))
        elif isinstance(outcome, Telemetry):
            telemetry.append((item, outcome))
        else:
            statuses.append((item, outcome))

    # Dedupe: within the batch, then against everything ingested before.
    unique: dict[tuple[str, int], tuple[Incoming, Telemetry]] = {}
    for item, message in telemetry:
        unique.setdefault((message.device_id, message.payload.seq), (item, message))
    fresh = _first_seen(session, list(unique), now)
    result.duplicates = len(telemetry) - len(fresh)
    accepted = [unique[key] for key in unique if key in fresh]
    result.accepted = len(accepted)

    entries: list[dict[str, Any]] = []
    details = [message.detail(item.received_at) for item, message in accepted]
    for detail_text in chunk_details(details, MAX_DETAIL_BYTES):
        entries.append({"Source": SOURCE, "DetailType": TELEMETRY_BATCH, "Detail": detail_text})

    for item, message in accepted:
        device = devices[message.device_id]
        if device.last_seen_at is None or item.received_at > device.last_seen_at:
            device.last_seen_at = item.received_at
        if device.last_seq is None or message.payload.seq > device.last_seq:
            device.last_seq = message.payload.seq

    for item, change in statuses:
        device = devices[change.device_id]
        if device.availability == change.status:
            continue  # a retained status seen again, or a redelivery: nothing changed
        device.availability = change.status
        device.availability_at = item.received_at
        result.statuses += 1
        entries.append(
            {
                "Source": SOURCE,
                "DetailType": DEVICE_STATUS,
                "Detail": json.dumps(
                    {
                        "device_id": change.device_id,
                        "status": change.status,
                        "received_at": format_ts(item.received_at),
                    }
                ),
            }
        )

    scope = Scope(settings.region, settings.account_id)
    for request in requests_of(entries):
        put = put_events(session, request, scope, now=now, settings=settings)
        if put.failed_count:
            failed = next(e for e in put.entries if "ErrorCode" in e)
            raise RuntimeError(f"the bus refused ingest's events: {failed}")
    session.flush()
    return result
