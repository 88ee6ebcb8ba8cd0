"""``iot``: the thermometer — devices and probes, cooks, readings downsampled over a time range,
alarms, ingest's dead letters; probe settings, alarm acknowledge/silence, start/end a cook; live
readings and alarms.

Reads run in short sessions on a worker thread and return plain strawberry objects. A device's
probes, current cook and open alarms go through per-request dataloaders (one statement each for
any number of devices). Readings are bucketed by :func:`app.iot.downsample.buckets` (from the
10 s rollup when the range is long): a 12-hour cook at 1 Hz comes back as at most
``maxPoints`` avg/min/max points per probe. Subscriptions relay :mod:`app.realtime` (Redis
pub/sub, or the MQTT broker when there is no Redis), so a reading
stored by a worker process reaches every API process's subscribers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any, NewType, TypeVar

import strawberry
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from app import realtime
from app.config import Settings
from app.db import utcnow
from app.graphql.context import CanWrite, Context, IsAuthenticated, in_session
from app.graphql.subscriptions import _count
from app.iot import cooks, devices, probes
from app.iot.alarms import service as alarms_service
from app.iot.alarms.evaluate import eta_seconds
from app.iot.alarms.models import ALARM_STATES
from app.iot.alarms.models import Alarm as AlarmRow
from app.iot.downsample import Bucket, buckets
from app.iot.enrich import DEVICE_CHANGES
from app.iot.ingest.redrive import CannotRedrive, redrive
from app.iot.models import Cook as CookRow
from app.iot.models import Device as DeviceRow
from app.iot.models import IngestDeadLetter
from app.iot.models import Probe as ProbeRow

T = TypeVar("T")
MAX_LIMIT = 1000
MAX_POINTS = 10_000


def _limit(value: int) -> int:
    return max(1, min(value, MAX_LIMIT))


# --- types --------------------------------------------------------------------------------


@strawberry.type
class Point:
    ts: datetime = strawberry.field(description="The first reading's time in the bucket.")
    temp_c: float | None = strawberry.field(description="Average over the bucket.")
    min_c: float | None
    max_c: float | None


# A whole column as one scalar: graphql-core completes a list of scalars item by item (4 probes x
# 1,000 buckets x 4 lists = 16,000 Python calls, about half of a readings request); these go to
# JSON as they are. The response is the same JSON as ``[DateTime!]!`` / ``[Float]!`` would give.
DateTimeColumn = NewType("DateTimeColumn", list[datetime])
FloatColumn = NewType("FloatColumn", list[float | None])
#: Registered in the schema's ``StrawberryConfig(scalar_map=...)``.
SCALARS: dict[object, Any] = {
    DateTimeColumn: strawberry.scalar(
        name="DateTimeColumn",
        description="A list of ISO 8601 date-times, one per bucket.",
        serialize=lambda values: [value.isoformat() for value in values],
        parse_value=lambda values: [datetime.fromisoformat(value) for value in values],
    ),
    FloatColumn: strawberry.scalar(
        name="FloatColumn",
        description="A list of floats (null where a bucket has none), one per bucket.",
        serialize=list,
        parse_value=list,
    ),
}


@strawberry.type(
    description="One probe's series as parallel arrays (index i of each is one bucket)."
)
class SeriesColumns:
    ts: DateTimeColumn = strawberry.field(description="Each bucket's first reading time.")
    temp_c: FloatColumn = strawberry.field(description="Each bucket's average.")
    min_c: FloatColumn
    max_c: FloatColumn


@strawberry.type
class ProbeSeries:
    probe_id: str
    buckets: strawberry.Private[list[Bucket]]

    @strawberry.field  # one object per bucket: compatible, several times slower than columns
    def points(self) -> list[Point]:
        return [Point(ts=b.ts, temp_c=b.avg_c, min_c=b.min_c, max_c=b.max_c) for b in self.buckets]

    @strawberry.field  # the same buckets as a few lists instead of thousands of objects
    def columns(self) -> SeriesColumns:
        rows = self.buckets
        return SeriesColumns(
            ts=DateTimeColumn([b.ts for b in rows]),
            temp_c=FloatColumn([b.avg_c for b in rows]),
            min_c=FloatColumn([b.min_c for b in rows]),
            max_c=FloatColumn([b.max_c for b in rows]),
        )


@strawberry.type
class AlarmNotification:
    action: str = strawberry.field(description="open or clear")
    at: datetime
    outcome: str = strawberry.field(
        description="sent, refused (egress policy), quiet (acknowledged or silenced), no_urls"
    )
    targets: list[str] = strawberry.field(description="Where it went, tokens masked.")


@strawberry.type
class Alarm:
    id: int
    device_id: strawberry.ID
    probe_id: str | None
    kind: str = strawberry.field(
        description="target_reached, high, low, pit_range, probe_open, device_offline or stall"
    )
    state: str = strawberry.field(description="open, acknowledged or cleared")
    message: str
    value: float | None
    threshold: float | None
    opened_at: datetime
    acknowledged_at: datetime | None
    cleared_at: datetime | None
    silenced_until: datetime | None
    notifications: list[AlarmNotification] = strawberry.field(
        default_factory=list,
        description="What each transition's notification did (oldest first); targets masked.",
    )


@strawberry.type
class Probe:
    device_id: strawberry.ID
    probe_id: str
    name: str
    role: str = strawberry.field(description="pit, food or ambient")
    calibration_offset_c: float
    target_c: float | None
    high_c: float | None
    low_c: float | None
    setpoint_c: float | None
    pit_band_c: float | None
    last_temp_c: float | None
    last_status: str | None
    last_rate_c_per_min: float | None
    last_ts: datetime | None
    eta_seconds: float | None = strawberry.field(
        description="Time to target at the current rate; 0 once reached; null if not rising."
    )
    stalled: bool = strawberry.field(description="A stall alarm is active on this probe.")


@strawberry.type
class Cook:
    id: int
    device_id: strawberry.ID
    name: str | None
    started_at: datetime
    ended_at: datetime | None
    last_reading_at: datetime

    @strawberry.field  # alarms opened during the cook, oldest first, with their notifications
    async def alarms(self, info: Info[Context, Any]) -> list[Alarm]:
        def work(session: Session) -> list[Alarm]:
            query = select(AlarmRow).where(
                AlarmRow.device_id == str(self.device_id), AlarmRow.opened_at >= self.started_at
            )
            if self.ended_at is not None:
                query = query.where(AlarmRow.opened_at <= self.ended_at)
            rows = session.scalars(query.order_by(AlarmRow.opened_at, AlarmRow.id).limit(MAX_LIMIT))
            return [_alarm(r) for r in rows]

        return await in_session(info.context.settings, work)

    @strawberry.field  # the whole cook, downsampled to at most maxPoints per probe
    async def readings(self, info: Info[Context, Any], max_points: int = 1000) -> list[ProbeSeries]:
        end = (self.ended_at or self.last_reading_at) + timedelta(seconds=1)
        return await _series(
            info.context.settings, str(self.device_id), self.started_at, end, max_points, None
        )


@strawberry.type
class NotifyTarget:
    """Where the device's alarms go: an Apprise URL as its privacy mode shows it (tokens and
    passwords masked); the URL itself is never sent back."""

    id: str
    display: str


@strawberry.type
class NotifyTest:
    outcome: str = strawberry.field(
        description="sent, refused (egress policy), failed, no_urls, or pending (no answer "
        "from a worker within the wait; it may still arrive)"
    )
    detail: str


@strawberry.type
class Device:
    id: strawberry.ID
    name: str
    availability: str | None = strawberry.field(description="online/offline; null until heard")
    last_seen_at: datetime | None
    notify_urls: strawberry.Private[list[str]]

    @strawberry.field  # masked by Apprise only when asked for (it parses each URL)
    def notify_targets(self) -> list[NotifyTarget]:
        return [
            NotifyTarget(id=devices.notify_target_id(u), display=devices.notify_display(u))
            for u in self.notify_urls
        ]

    @strawberry.field
    async def probes(self, info: Info[Context, Any]) -> list[Probe]:
        return await _loaders(info).probes.load(str(self.id))

    @strawberry.field  # the cook in progress, if any
    async def current_cook(self, info: Info[Context, Any]) -> Cook | None:
        return await _loaders(info).current_cook.load(str(self.id))

    @strawberry.field  # alarms not cleared yet (open or acknowledged), newest first
    async def open_alarms(self, info: Info[Context, Any]) -> list[Alarm]:
        return await _loaders(info).open_alarms.load(str(self.id))


@strawberry.type
class IotDeadLetter:
    id: int
    received_at: datetime
    topic: str
    device_id: str | None
    kind: str
    reason: str
    payload: str = strawberry.field(
        description="The first 4 KiB as text; bytes that are not UTF-8, and NUL, as \\xNN."
    )
    redrivable: bool = strawberry.field(description="Its exact bytes were kept (not too_large).")
    redriven_at: datetime | None


def _iot_dead_letter(r: IngestDeadLetter) -> IotDeadLetter:
    return IotDeadLetter(
        id=r.id,
        received_at=r.received_at,
        topic=r.topic,
        device_id=r.device_id,
        kind=r.kind,
        reason=r.reason,
        payload=r.payload,
        redrivable=r.raw is not None and r.redriven_at is None,
        redriven_at=r.redriven_at,
    )


@strawberry.type
class ProbeReading:
    probe_id: str
    temp_c: float | None
    status: str
    rate_c_per_min: float | None


@strawberry.type
class ReadingUpdate:
    device_id: strawberry.ID
    seq: int
    ts: datetime
    cook_id: int | None
    probes: list[ProbeReading]


@strawberry.input
class ProbeSettingsInput:
    """Fields left out keep their value; ``null`` clears a threshold."""

    name: str | None = strawberry.UNSET
    role: str | None = strawberry.UNSET
    target_c: float | None = strawberry.UNSET
    high_c: float | None = strawberry.UNSET
    low_c: float | None = strawberry.UNSET
    setpoint_c: float | None = strawberry.UNSET
    pit_band_c: float | None = strawberry.UNSET
    calibration_offset_c: float | None = strawberry.UNSET


# --- row → type ---------------------------------------------------------------------------


def _device(row: DeviceRow) -> Device:
    return Device(
        id=strawberry.ID(row.id),
        name=row.name,
        availability=row.availability,
        last_seen_at=row.last_seen_at,
        notify_urls=list(row.notify_urls or []),
    )


def _probe(row: ProbeRow, stalled: bool = False) -> Probe:
    return Probe(
        device_id=strawberry.ID(row.device_id),
        probe_id=row.probe_id,
        name=row.name,
        role=row.role,
        calibration_offset_c=row.calibration_offset_c,
        target_c=row.target_c,
        high_c=row.high_c,
        low_c=row.low_c,
        setpoint_c=row.setpoint_c,
        pit_band_c=row.pit_band_c,
        last_temp_c=row.last_temp_c,
        last_status=row.last_status,
        last_rate_c_per_min=row.last_rate_c_per_min,
        last_ts=row.last_ts,
        eta_seconds=eta_seconds(row.last_temp_c, row.target_c, row.last_rate_c_per_min),
        stalled=stalled,
    )


def _cook(row: CookRow) -> Cook:
    return Cook(
        id=row.id,
        device_id=strawberry.ID(row.device_id),
        name=row.name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        last_reading_at=row.last_reading_at,
    )


def _alarm(row: AlarmRow) -> Alarm:
    return Alarm(
        id=row.id,
        device_id=strawberry.ID(row.device_id),
        probe_id=row.probe_id,
        kind=row.kind,
        state=row.state,
        message=row.message,
        value=row.value,
        threshold=row.threshold,
        opened_at=row.opened_at,
        acknowledged_at=row.acknowledged_at,
        cleared_at=row.cleared_at,
        silenced_until=row.silenced_until,
        notifications=[
            AlarmNotification(
                action=str(n.get("action")),
                at=datetime.fromisoformat(str(n["at"])),
                outcome=str(n.get("outcome")),
                targets=[str(t) for t in n.get("targets") or []],
            )
            for n in row.notifications or []
            if n.get("at")
        ],
    )


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _alarm_from_message(message: dict[str, Any]) -> Alarm:
    opened = _parse_time(message.get("opened_at"))
    assert opened is not None
    return Alarm(
        id=int(message["id"]),
        device_id=strawberry.ID(str(message["device_id"])),
        probe_id=message.get("probe_id"),
        kind=str(message["kind"]),
        state=str(message["state"]),
        message=str(message["message"]),
        value=message.get("value"),
        threshold=message.get("threshold"),
        opened_at=opened,
        acknowledged_at=_parse_time(message.get("acknowledged_at")),
        cleared_at=_parse_time(message.get("cleared_at")),
        silenced_until=_parse_time(message.get("silenced_until")),
    )


def _reading_from_message(message: dict[str, Any]) -> ReadingUpdate:
    ts = _parse_time(message.get("ts"))
    assert ts is not None
    return ReadingUpdate(
        device_id=strawberry.ID(str(message["device_id"])),
        seq=int(message["seq"]),
        ts=ts,
        cook_id=message.get("cook_id"),
        probes=[
            ProbeReading(
                probe_id=str(p["probe_id"]),
                temp_c=p.get("temp_c"),
                status=str(p.get("status", "ok")),
                rate_c_per_min=p.get("rate_c_per_min"),
            )
            for p in message.get("probes", [])
        ],
    )


# --- dataloaders --------------------------------------------------------------------------


class IotLoaders:
    """One set per request or WebSocket connection; batches, never caches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.probes = DataLoader[str, list[Probe]](load_fn=self._probes, cache=False)
        self.current_cook = DataLoader[str, Cook | None](load_fn=self._current_cook, cache=False)
        self.open_alarms = DataLoader[str, list[Alarm]](load_fn=self._open_alarms, cache=False)

    async def _probes(self, device_ids: list[str]) -> list[list[Probe]]:
        def work(session: Session) -> list[list[Probe]]:
            stalled = probes.stalled(session, device_ids)
            found: dict[str, list[Probe]] = defaultdict(list)
            rows = session.scalars(
                select(ProbeRow)
                .where(ProbeRow.device_id.in_(device_ids))
                .order_by(ProbeRow.device_id, ProbeRow.probe_id)
            )
            for row in rows:
                found[row.device_id].append(_probe(row, (row.device_id, row.probe_id) in stalled))
            return [found.get(key, []) for key in device_ids]

        return await in_session(self.settings, work)

    async def _current_cook(self, device_ids: list[str]) -> list[Cook | None]:
        def work(session: Session) -> list[Cook | None]:
            rows = session.scalars(
                select(CookRow)
                .where(CookRow.device_id.in_(device_ids), CookRow.ended_at.is_(None))
                .order_by(CookRow.started_at)
            )
            found = {row.device_id: _cook(row) for row in rows}  # the latest wins
            return [found.get(key) for key in device_ids]

        return await in_session(self.settings, work)

    async def _open_alarms(self, device_ids: list[str]) -> list[list[Alarm]]:
        def work(session: Session) -> list[list[Alarm]]:
            found: dict[str, list[Alarm]] = defaultdict(list)
            rows = session.scalars(
                select(AlarmRow)
                .where(AlarmRow.device_id.in_(device_ids), AlarmRow.cleared_at.is_(None))
                .order_by(AlarmRow.opened_at.desc(), AlarmRow.id.desc())
            )
            for row in rows:
                found[row.device_id].append(_alarm(row))
            return [found.get(key, []) for key in device_ids]

        return await in_session(self.settings, work)


def _loaders(info: Info[Context, Any]) -> IotLoaders:
    return info.context.loaders(IotLoaders)


# --- queries ------------------------------------------------------------------------------


async def _series(
    settings: Settings,
    device_id: str,
    start: datetime,
    end: datetime,
    max_points: int,
    probe_ids: list[str] | None,
) -> list[ProbeSeries]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a time zone (e.g. 2026-11-26T08:00:00Z)")
    if end <= start:
        raise ValueError("end must be after start")
    if not 1 <= max_points <= MAX_POINTS:
        raise ValueError(f"maxPoints must be between 1 and {MAX_POINTS}")

    def work(session: Session) -> list[ProbeSeries]:
        found = buckets(session, device_id, start, end, max_points, probe_ids)
        return [ProbeSeries(probe_id=probe_id, buckets=rows) for probe_id, rows in found.items()]

    return await in_session(settings, work)


async def resolve_devices(info: Info[Context, Any]) -> list[Device]:
    def work(session: Session) -> list[Device]:
        return [_device(r) for r in session.scalars(select(DeviceRow).order_by(DeviceRow.name))]

    return await in_session(info.context.settings, work)


async def resolve_device(info: Info[Context, Any], id: strawberry.ID) -> Device | None:
    def work(session: Session) -> Device | None:
        row = session.get(DeviceRow, str(id))
        return _device(row) if row is not None else None

    return await in_session(info.context.settings, work)


async def resolve_cooks(
    info: Info[Context, Any], device_id: strawberry.ID | None = None, limit: int = 20
) -> list[Cook]:
    """Newest first."""

    def work(session: Session) -> list[Cook]:
        statement = select(CookRow)
        if device_id is not None:
            statement = statement.where(CookRow.device_id == str(device_id))
        statement = statement.order_by(CookRow.started_at.desc(), CookRow.id.desc())
        return [_cook(r) for r in session.scalars(statement.limit(_limit(limit)))]

    return await in_session(info.context.settings, work)


async def resolve_cook(info: Info[Context, Any], id: int) -> Cook | None:
    def work(session: Session) -> Cook | None:
        row = session.get(CookRow, id)
        return _cook(row) if row is not None else None

    return await in_session(info.context.settings, work)


async def resolve_readings(
    info: Info[Context, Any],
    device_id: strawberry.ID,
    start: datetime,
    end: datetime,
    max_points: int = 1000,
    probe_ids: list[str] | None = None,
) -> list[ProbeSeries]:
    """Readings in ``[start, end)``, bucketed to at most ``maxPoints`` points per probe."""
    return await _series(info.context.settings, str(device_id), start, end, max_points, probe_ids)


async def resolve_alarms(
    info: Info[Context, Any],
    device_id: strawberry.ID | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[Alarm]:
    """Newest first; ``state`` is open, acknowledged or cleared."""
    if state is not None and state not in ALARM_STATES:
        raise ValueError(f"state must be one of {', '.join(ALARM_STATES)}")

    def work(session: Session) -> list[Alarm]:
        statement = select(AlarmRow)
        if device_id is not None:
            statement = statement.where(AlarmRow.device_id == str(device_id))
        if state is not None:
            statement = statement.where(AlarmRow.state == state)
        statement = statement.order_by(AlarmRow.opened_at.desc(), AlarmRow.id.desc())
        return [_alarm(r) for r in session.scalars(statement.limit(_limit(limit)))]

    return await in_session(info.context.settings, work)


async def resolve_dead_letters(info: Info[Context, Any], limit: int = 50) -> list[IotDeadLetter]:
    """Messages ingest refused, newest first."""

    def work(session: Session) -> list[IotDeadLetter]:
        rows = session.scalars(
            select(IngestDeadLetter)
            .order_by(IngestDeadLetter.received_at.desc(), IngestDeadLetter.id.desc())
            .limit(_limit(limit))
        )
        return [_iot_dead_letter(r) for r in rows]

    return await in_session(info.context.settings, work)


@strawberry.type
class IotQuery:
    devices: list[Device] = strawberry.field(
        resolver=resolve_devices, permission_classes=[IsAuthenticated]
    )
    device: Device | None = strawberry.field(
        resolver=resolve_device, permission_classes=[IsAuthenticated]
    )
    cooks: list[Cook] = strawberry.field(
        resolver=resolve_cooks, permission_classes=[IsAuthenticated]
    )
    cook: Cook | None = strawberry.field(
        resolver=resolve_cook, permission_classes=[IsAuthenticated]
    )
    readings: list[ProbeSeries] = strawberry.field(
        resolver=resolve_readings, permission_classes=[IsAuthenticated]
    )
    alarms: list[Alarm] = strawberry.field(
        resolver=resolve_alarms, permission_classes=[IsAuthenticated]
    )
    iot_dead_letters: list[IotDeadLetter] = strawberry.field(
        resolver=resolve_dead_letters, permission_classes=[IsAuthenticated]
    )


# --- mutations ----------------------------------------------------------------------------


async def resolve_update_probe(
    info: Info[Context, Any], device_id: strawberry.ID, probe_id: str, input: ProbeSettingsInput
) -> Probe:
    """Change a probe's name, role, calibration, target and thresholds; the next reading is
    judged against them."""
    changes = {k: v for k, v in vars(input).items() if v is not strawberry.UNSET}

    def work(session: Session) -> Probe:
        row = probes.update_settings(session, str(device_id), probe_id, changes)
        stalled = probes.stalled(session, [row.device_id])
        return _probe(row, (row.device_id, row.probe_id) in stalled)

    return await in_session(info.context.settings, work)


async def resolve_add_notify_url(
    info: Info[Context, Any], device_id: strawberry.ID, url: str
) -> Device:
    """Send this device's alarms to one more Apprise URL (``ntfy://…``, ``tgram://…``,
    ``mailto://…``, ``json://…``), checked as the CLI checks it."""

    def work(session: Session) -> Device:
        return _device(devices.add_notify_url(session, str(device_id), url))

    return await in_session(info.context.settings, work)


async def resolve_remove_notify_url(
    info: Info[Context, Any], device_id: strawberry.ID, target_id: str
) -> Device:
    def work(session: Session) -> Device:
        return _device(devices.remove_notify_url(session, str(device_id), target_id))

    return await in_session(info.context.settings, work)


#: How long a test notification's answer is waited for (Apprise's own timeout is the egress
#: one; past this the answer is "pending" and the notification may still arrive).
TEST_WAIT_SECONDS = 15.0


async def resolve_send_test_notification(
    info: Info[Context, Any], device_id: strawberry.ID, target_id: str | None = None
) -> NotifyTest:
    """Send a test notification to the device's targets (or one), from a worker -- outbound
    calls on users' behalf go through the egress policy there -- and wait for the outcome."""
    settings = info.context.settings

    def known(session: Session) -> None:
        devices.get_device(session, str(device_id))

    await in_session(settings, known)
    request_id = uuid.uuid4().hex
    channel = alarms_service.test_reply_channel(request_id)
    async with realtime.listen(settings, channel) as replies:
        await run_in_threadpool(
            alarms_service.enqueue_test, settings, str(device_id), target_id, request_id
        )
        try:
            reply = await asyncio.wait_for(replies.get(), TEST_WAIT_SECONDS)
        except TimeoutError:
            return NotifyTest(
                outcome="pending",
                detail="No worker answered yet; the notification may still arrive.",
            )
    return NotifyTest(outcome=str(reply.get("outcome")), detail=str(reply.get("detail", "")))


async def _alarm_action(info: Info[Context, Any], action: Any) -> Alarm:
    settings = info.context.settings

    def work(session: Session) -> Alarm:
        row = action(session)
        session.flush()
        message = alarms_service.alarm_message(row)
        alarms_service.publish_alarm_after_commit(session, settings, message)
        return _alarm(row)

    return await in_session(settings, work)


async def resolve_acknowledge_alarm(info: Info[Context, Any], id: int) -> Alarm:
    """Stop notifying; the alarm stays until its condition clears."""
    return await _alarm_action(info, lambda s: alarms_service.acknowledge(s, id, utcnow()))


async def resolve_silence_alarm(info: Info[Context, Any], id: int, minutes: int) -> Alarm:
    """No notifications for ``minutes`` (0 lifts the silence)."""
    return await _alarm_action(info, lambda s: alarms_service.silence(s, id, minutes, utcnow()))


async def resolve_start_cook(
    info: Info[Context, Any], device_id: strawberry.ID, name: str | None = None
) -> Cook:
    """Start a cook now, ending the one in progress (as FireBoard's "new session")."""

    def work(session: Session) -> Cook:
        row = cooks.start_cook(session, str(device_id), utcnow(), name)
        session.flush()
        return _cook(row)

    return await in_session(info.context.settings, work)


async def resolve_end_cook(info: Info[Context, Any], device_id: strawberry.ID) -> Cook | None:
    """End the cook in progress; null if there was none."""

    def work(session: Session) -> Cook | None:
        ended = cooks.end_cook(session, str(device_id), utcnow())
        return _cook(ended) if ended is not None else None

    return await in_session(info.context.settings, work)


async def resolve_redrive_iot_dead_letter(info: Info[Context, Any], id: int) -> IotDeadLetter:
    """Run a refused message's exact bytes through ingest again (after provisioning its device,
    say); refused again, it becomes a new dead letter. Each dead letter is redriven once."""
    settings = info.context.settings

    def work(session: Session) -> IotDeadLetter:
        try:
            letter, _ = redrive(session, settings, settings.iot, id, utcnow())
        except CannotRedrive as exc:
            raise ValueError(str(exc)) from None
        session.flush()
        return _iot_dead_letter(letter)

    return await in_session(settings, work)


@strawberry.type
class IotMutation:
    update_probe: Probe = strawberry.field(
        resolver=resolve_update_probe, permission_classes=[CanWrite]
    )
    acknowledge_alarm: Alarm = strawberry.field(
        resolver=resolve_acknowledge_alarm, permission_classes=[CanWrite]
    )
    silence_alarm: Alarm = strawberry.field(
        resolver=resolve_silence_alarm, permission_classes=[CanWrite]
    )
    start_cook: Cook = strawberry.field(resolver=resolve_start_cook, permission_classes=[CanWrite])
    end_cook: Cook | None = strawberry.field(
        resolver=resolve_end_cook, permission_classes=[CanWrite]
    )
    redrive_iot_dead_letter: IotDeadLetter = strawberry.field(
        resolver=resolve_redrive_iot_dead_letter, permission_classes=[CanWrite]
    )
    add_notify_url: Device = strawberry.field(
        resolver=resolve_add_notify_url, permission_classes=[CanWrite]
    )
    remove_notify_url: Device = strawberry.field(
        resolver=resolve_remove_notify_url, permission_classes=[CanWrite]
    )
    send_test_notification: NotifyTest = strawberry.field(
        resolver=resolve_send_test_notification, permission_classes=[CanWrite]
    )


# --- subscriptions ------------------------------------------------------------------------


async def _relay(
    settings: Settings, field: str, channel: str, parse: Callable[[dict[str, Any]], T]
) -> AsyncGenerator[T]:
    """Messages of one channel as ``parse`` makes them, counted in the active-subscriptions
    gauge while streaming; a malformed live message is skipped, never ends the stream."""
    _count(field, 1)
    try:
        async with aclosing(realtime.subscribe(settings, channel)) as stream:
            async for message in stream:
                try:
                    parsed = parse(message)
                except (KeyError, TypeError, ValueError, AssertionError):
                    continue
                yield parsed
    finally:
        _count(field, -1)


async def subscribe_readings(
    info: Info[Context, Any], device_id: strawberry.ID
) -> AsyncGenerator[ReadingUpdate]:
    """Every stored telemetry message of the device, calibrated, as it is stored."""
    channel = f"readings:{device_id}"
    async with aclosing(
        _relay(info.context.settings, "readings", channel, _reading_from_message)
    ) as stream:
        async for update in stream:
            yield update


async def subscribe_alarms(
    info: Info[Context, Any], device_id: strawberry.ID | None = None
) -> AsyncGenerator[Alarm]:
    """Alarm changes (opened, acknowledged, silenced, cleared) of one device or of all."""
    channel = f"alarms:{device_id}" if device_id is not None else alarms_service.ALL_ALARMS
    async with aclosing(
        _relay(info.context.settings, "alarms", channel, _alarm_from_message)
    ) as stream:
        async for alarm in stream:
            yield alarm


@strawberry.type
class DeviceChange:
    """A thermometer started reporting, or reported a probe it had not reported before."""

    device_id: strawberry.ID
    probe_ids: list[str]


def _device_change(message: dict[str, Any]) -> DeviceChange:
    return DeviceChange(
        device_id=strawberry.ID(str(message["device_id"])),
        probe_ids=[str(p) for p in message["probe_ids"]],
    )


async def subscribe_device_changes(info: Info[Context, Any]) -> AsyncGenerator[DeviceChange]:
    """Each device's first probes (its first readings are stored) and each new probe: the
    grill view shows a thermometer from its first reading without a reload."""
    settings = info.context.settings
    async with aclosing(
        _relay(settings, "deviceChanges", DEVICE_CHANGES, _device_change)
    ) as stream:
        async for change in stream:
            yield change


@strawberry.type
class IotSubscription:
    readings: AsyncGenerator[ReadingUpdate] = strawberry.subscription(
        resolver=subscribe_readings, permission_classes=[IsAuthenticated]
    )
    alarms: AsyncGenerator[Alarm] = strawberry.subscription(
        resolver=subscribe_alarms, permission_classes=[IsAuthenticated]
    )
    device_changes: AsyncGenerator[DeviceChange] = strawberry.subscription(
        resolver=subscribe_device_changes, permission_classes=[IsAuthenticated]
    )
