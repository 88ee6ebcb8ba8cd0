"""Alarm service: user actions (acknowledge, silence) and the live message of an alarm.

Services don't commit; the caller's session does. What must happen after the commit (the live
message, the notification) is returned to the caller, which does it once the commit succeeded.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app import realtime
from app.celery_client import celery_for
from app.config import Settings
from app.db import after_commit, dialect_insert
from app.iot.alarms.evaluate import (
    AlarmConfig,
    DeviceState,
    ProbeSettings,
    ProbeState,
    Reading,
    Transition,
    evaluate_device,
    evaluate_probe,
)
from app.iot.alarms.models import DEVICE_SCOPE, Alarm, AlarmEvaluatorState
from app.iot.models import Device, Probe

log = logging.getLogger("smokehouse.iot.alarms")

#: Longest silence: a week (FireBoard and Signals offer hours; more is a mistake).
MAX_SILENCE_MINUTES: Final = 7 * 24 * 60


class AlarmNotFound(LookupError):
    pass


def get_alarm(session: Session, alarm_id: int) -> Alarm:
    alarm = session.get(Alarm, alarm_id)
    if alarm is None:
        raise AlarmNotFound(f"no alarm with id {alarm_id}")
    return alarm


def acknowledge(session: Session, alarm_id: int, now: datetime) -> Alarm:
    """An open alarm becomes ``acknowledged``: it stays until its condition clears, without
    further notifications. Acknowledging again (or a cleared alarm) changes nothing."""
    alarm = get_alarm(session, alarm_id)
    if alarm.state == "open":
        alarm.state = "acknowledged"
        alarm.acknowledged_at = now
    return alarm


def silence(session: Session, alarm_id: int, minutes: int, now: datetime) -> Alarm:
    """No notifications for this alarm until ``now + minutes`` (0 lifts the silence)."""
    if not 0 <= minutes <= MAX_SILENCE_MINUTES:
        raise ValueError(f"minutes must be between 0 and {MAX_SILENCE_MINUTES}")
    alarm = get_alarm(session, alarm_id)
    alarm.silenced_until = now + timedelta(minutes=minutes) if minutes else None
    return alarm


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def alarm_message(alarm: Alarm) -> dict[str, Any]:
    """The alarm as its GraphQL fields in snake_case: what ``alarms:<device_id>`` carries."""
    return {
        "id": alarm.id,
        "device_id": alarm.device_id,
        "probe_id": alarm.probe_id,
        "kind": alarm.kind,
        "state": alarm.state,
        "message": alarm.message,
        "value": alarm.value,
        "threshold": alarm.threshold,
        "opened_at": _iso(alarm.opened_at),
        "acknowledged_at": _iso(alarm.acknowledged_at),
        "cleared_at": _iso(alarm.cleared_at),
        "silenced_until": _iso(alarm.silenced_until),
    }


#: Every device's alarm changes (the ``alarms`` subscription without a device).
ALL_ALARMS: Final = "alarms"


def publish_alarm_after_commit(
    session: Session, settings: Settings, message: dict[str, Any]
) -> None:
    """:func:`publish_alarm` once ``session`` commits (never if it rolls back)."""
    after_commit(session).call(publish_alarm, settings, message)


def publish_alarm(settings: Settings, message: dict[str, Any]) -> None:
    """Live update after the commit: the device's channel and the all-devices one."""
    realtime.publish(settings, f"alarms:{message['device_id']}", message)
    realtime.publish(settings, ALL_ALARMS, message)


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An alarm opened or cleared, to announce after the commit."""

    alarm_id: int
    action: str  # open | clear
    notify: bool
    message: dict[str, Any]


def parse_time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{what} is not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{what} has no time zone: {value!r}")
    return parsed


def _locked(
    session: Session, device_ids: Iterable[str], now: datetime
) -> tuple[dict[str, Device], dict[str, dict[str, AlarmEvaluatorState]]]:
    """The devices that exist and their evaluator rows, locked until the commit: two workers
    judging the same device take turns, so neither loses the other's update.

    A few statements for the whole batch, not a handful per device. Locks are taken in id
    order in each phase (lock what exists, then create the missing device rows), so two
    workers never deadlock. SQLite has one write lock instead, taken by a no-op write before
    any read (a write after a read fails if another writer committed in between)."""
    S = AlarmEvaluatorState  # noqa: N806
    ids = sorted(set(device_ids))
    if not ids:
        return {}, {}
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(S)
            .where(S.device_id.in_(ids), S.probe_id == DEVICE_SCOPE)
            .values(updated_at=S.updated_at)
            .execution_options(synchronize_session=False)
        )
    devices = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(ids)))}
    states: dict[str, dict[str, AlarmEvaluatorState]] = {d: {} for d in sorted(devices)}

    def lock(some: list[str]) -> None:
        rows = session.scalars(
            select(S)
            .where(S.device_id.in_(some))
            .order_by(S.device_id, S.probe_id)
            .with_for_update()
        )
        for row in rows:
            states[row.device_id][row.probe_id] = row

    lock(list(states))
    missing = [d for d in states if DEVICE_SCOPE not in states[d]]
    if missing:  # a device's first judgement: its row is there to lock from now on
        session.execute(
            dialect_insert(session)(S)
            .values(
                [
                    {"device_id": d, "probe_id": DEVICE_SCOPE, "state": {}, "updated_at": now}
                    for d in missing
                ]
            )
            .on_conflict_do_nothing(index_elements=["device_id", "probe_id"])
        )
        lock(missing)
    return devices, states


def _probe_settings(row: Probe | None, probe_id: str) -> ProbeSettings:
    if row is None:  # enrich-and-store has not created it yet: a food probe, no thresholds
        return ProbeSettings(probe_id=probe_id, name=probe_id)
    return ProbeSettings(
        probe_id=row.probe_id,
        name=row.name or row.probe_id,
        role=row.role,
        target_c=row.target_c,
        high_c=row.high_c,
        low_c=row.low_c,
        setpoint_c=row.setpoint_c,
        pit_band_c=row.pit_band_c,
    )


def _apply(
    session: Session, device: Device, transitions: list[Transition], now: datetime
) -> list[AlarmChange]:
    """Open or clear alarm rows; one open alarm per (device, probe, kind) — an existing one is
    kept rather than duplicated."""
    changes: list[AlarmChange] = []
    for t in transitions:
        found = session.scalar(
            select(Alarm).where(
                Alarm.device_id == device.id,
                Alarm.probe_id.is_(None) if t.probe_id is None else Alarm.probe_id == t.probe_id,
                Alarm.kind == t.kind,
                Alarm.cleared_at.is_(None),
            )
        )
        if t.action == "open":
            if found is not None:
                continue
            alarm = Alarm(
                device_id=device.id,
                probe_id=t.probe_id,
                kind=t.kind,
                state="open",
                message=t.message[:500],
                value=t.value,
                threshold=t.threshold,
                opened_at=t.at,
            )
            session.add(alarm)
            session.flush()
            changes.append(
                AlarmChange(alarm.id, "open", bool(device.notify_urls), alarm_message(alarm))
            )
        elif found is not None:
            quiet = found.state == "acknowledged" or (
                found.silenced_until is not None and found.silenced_until > now
            )
            found.state = "cleared"
            found.cleared_at = max(t.at, found.opened_at)
            session.flush()
            notify = bool(device.notify_urls) and not quiet
            changes.append(AlarmChange(found.id, "clear", notify, alarm_message(found)))
    return changes


def _save(row: AlarmEvaluatorState, state: ProbeState | DeviceState, now: datetime) -> None:
    data = state.to_json()
    if data != row.state:
        row.state = data
        row.updated_at = now


def process_telemetry(
    session: Session, messages: list[dict[str, Any]], now: datetime, config: AlarmConfig
) -> list[AlarmChange]:
    """Judge a Telemetry Batch (raw readings; calibrated here with each probe's offset).
    Redelivering the same batch changes nothing: the evaluator skips readings it has seen."""
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in messages:
        by_device[str(message["device_id"])].append(message)
    changes: list[AlarmChange] = []
    devices, locked = _locked(session, by_device, now)  # one deleted since ingest is skipped
    all_probes: dict[str, dict[str, Probe]] = defaultdict(dict)
    for p in session.scalars(select(Probe).where(Probe.device_id.in_(list(devices)))):
        all_probes[p.device_id][p.probe_id] = p
    for device_id, device in sorted(devices.items()):
        batch = by_device[device_id]
        states = locked[device_id]
        probes = all_probes[device_id]
        readings: dict[str, list[Reading]] = defaultdict(list)
        seen_at: datetime | None = None
        for message in batch:
            ts = parse_time(message["ts"], "ts")
            received = parse_time(message.get("received_at") or message["ts"], "received_at")
            seen_at = max(seen_at or received, received)
            for probe in message.get("probes", ()):
                probe_id = str(probe["id"])
                temp = probe.get("temp_c")
                row = probes.get(probe_id)
                if temp is not None and row is not None:
                    temp = float(temp) + row.calibration_offset_c
                readings[probe_id].append(
                    Reading(ts, None if temp is None else float(temp), str(probe["status"]))
                )
        transitions: list[Transition] = []
        for probe_id in sorted(readings):
            row_state = states.get(probe_id)
            if row_state is None:
                row_state = AlarmEvaluatorState(
                    device_id=device_id, probe_id=probe_id, state={}, updated_at=now
                )
                session.add(row_state)
            settings = _probe_settings(probes.get(probe_id), probe_id)
            new, found = evaluate_probe(
                settings, ProbeState.from_json(row_state.state), readings[probe_id], config
            )
            _save(row_state, new, now)
            transitions += found
        device_row = states[DEVICE_SCOPE]
        new_device, found = evaluate_device(
            DeviceState.from_json(device_row.state),
            seen_at or now,  # a backlog processed late is not silence
            device_name=device.name,
            seen_at=seen_at,
            config=config,
        )
        _save(device_row, new_device, now)
        changes += _apply(session, device, found + transitions, now)
    return changes


def process_status(
    session: Session,
    device_id: str,
    status: str,
    received_at: datetime,
    now: datetime,
    config: AlarmConfig,
) -> list[AlarmChange]:
    """A Device Status event (the retained availability topic / LWT)."""
    if status not in ("online", "offline"):
        raise ValueError(f"status must be online or offline, not {status!r}")
    devices, locked = _locked(session, [device_id], now)
    device = devices.get(device_id)
    if device is None:
        return []
    row = locked[device_id][DEVICE_SCOPE]
    new, found = evaluate_device(
        DeviceState.from_json(row.state),
        max(now, received_at),
        device_name=device.name,
        status=status,
        status_at=received_at,
        config=config,
    )
    _save(row, new, now)
    return _apply(session, device, found, now)


def sweep_offline(session: Session, now: datetime, config: AlarmConfig) -> list[AlarmChange]:
    """The clock's turn (the scheduler runs it): a device silent for ``offline_seconds`` goes
    offline. Only devices the evaluator has judged are watched (a thermometer put away before
    alarms existed does not alarm at the next deploy); fresh devices without an offline alarm
    are skipped without a write."""
    S = AlarmEvaluatorState  # noqa: N806
    changes: list[AlarmChange] = []
    silent_since = now - timedelta(seconds=config.offline_seconds)
    watched = session.execute(
        select(S.device_id, S.state, Device.last_seen_at)
        .join(Device, Device.id == S.device_id)
        .where(S.probe_id == DEVICE_SCOPE)
        .order_by(S.device_id)
    ).all()
    for device_id, data, last_seen_at in watched:
        state = DeviceState.from_json(data)
        seen = max((t for t in (last_seen_at, state.last_seen) if t is not None), default=None)
        offline = "device_offline" in state.active
        if seen is None or (seen > silent_since and not offline):
            continue
        devices, locked = _locked(session, [device_id], now)
        device = devices.get(device_id)
        if device is None:
            continue
        row = locked[device_id][DEVICE_SCOPE]
        new, found = evaluate_device(
            DeviceState.from_json(row.state),
            now,
            device_name=device.name,
            seen_at=last_seen_at,
            config=config,
        )
        _save(row, new, now)
        changes += _apply(session, device, found, now)
    return changes


# --- after the commit ---------------------------------------------------------------------


NOTIFY_TASK: Final = "iot_alarms.notify"
TEST_TASK: Final = "iot_alarms.notify_test"


def test_reply_channel(request_id: str) -> str:
    """Where the worker answers one test notification (the API waits there)."""
    return f"notify-test:{request_id}"


def enqueue_test(
    settings: Settings, device_id: str, target_id: str | None, request_id: str
) -> None:
    """Ask a worker to send a test notification (outbound calls on users' behalf run there)."""
    celery_for(settings).send_task(
        TEST_TASK, args=[device_id, target_id, request_id], queue="iot", retry=False
    )


#: Alarm transitions on the event bus, for rules to route (EventBridge's spine).
EVENT_SOURCE: Final = "smokehouse.iot"
EVENT_DETAIL_TYPE: Final = "Alarm State Change"


def announce_changes(session: Session, settings: Settings, changes: list[AlarmChange]) -> None:
    """Put each transition on the bus in ``session``'s transaction (the bus's outbox: committed
    with the alarm rows or not at all), then :func:`announce` them once it commits."""
    if not changes:
        return
    publish_transitions(session, settings, changes)
    after_commit(session).call(announce, settings, changes)


def publish_transitions(session: Session, settings: Settings, changes: list[AlarmChange]) -> None:
    """``source: smokehouse.iot``, ``detail-type: Alarm State Change``, one event per alarm
    opened or cleared; ``detail`` is the alarm (as the ``alarms`` subscription carries it) with
    ``action`` (``open`` or ``clear``). A redelivered batch makes no transition, so no event."""
    from app.bus.arns import Scope
    from app.bus.events import put_events

    entries = [
        {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps({"action": change.action, **change.message}),
            "Resources": [f"arn:smokehouse:iot:device/{change.message['device_id']}"],
        }
        for change in changes
    ]
    scope = Scope(settings.region, settings.account_id)
    for start in range(0, len(entries), 10):
        result = put_events(session, entries[start : start + 10], scope, settings=settings)
        if result.failed_count:
            raise RuntimeError(f"the bus refused alarm events: {result.entries}")


def announce(settings: Settings, changes: list[AlarmChange]) -> None:
    """After the commit: live updates to subscribers, and one notification task per alarm
    transition (off the hot path, retried by the worker). Never raises: a lost live update is
    caught up by a query; a notification not enqueued is found by :func:`unsent_notifications`."""
    for change in changes:
        publish_alarm(settings, change.message)
    enqueue_notifications(settings, [(c.alarm_id, c.action) for c in changes if c.notify])


def enqueue_notifications(settings: Settings, wanted: list[tuple[int, str]]) -> int:
    """Send one notification task per (alarm id, action); never raises."""
    sent = 0
    if not wanted:
        return sent
    try:
        celery = celery_for(settings)
        with celery.producer_or_acquire() as producer:
            for alarm_id, action in wanted:
                celery.send_task(
                    NOTIFY_TASK,
                    args=[alarm_id, action],
                    queue="iot",
                    producer=producer,
                    retry=False,
                )
                sent += 1
    except Exception as exc:
        log.warning("could not enqueue %d alarm notifications: %s", len(wanted) - sent, exc)
    return sent


#: A transition not notified this long after it happened was lost between commit and enqueue
#: (a crash, the broker down): the sweep sends it again. Older than the horizon: given up.
UNSENT_GRACE: Final = timedelta(seconds=60)
UNSENT_HORIZON: Final = timedelta(hours=6)


def unsent_notifications(session: Session, now: datetime) -> list[tuple[int, str]]:
    """Transitions that should have been notified and were not: the notification outbox. The
    task is idempotent (the alarm row records what went out), so sending twice is harmless."""
    due, oldest = now - UNSENT_GRACE, now - UNSENT_HORIZON
    rows = session.execute(
        select(Alarm, Device.notify_urls)
        .join(Device, Device.id == Alarm.device_id)
        .where(
            or_(
                and_(
                    Alarm.open_notified_at.is_(None),
                    Alarm.opened_at < due,
                    Alarm.opened_at > oldest,
                ),
                and_(
                    Alarm.cleared_at.is_not(None),
                    Alarm.clear_notified_at.is_(None),
                    Alarm.cleared_at < due,
                    Alarm.cleared_at > oldest,
                ),
            )
        )
        .order_by(Alarm.id)
    ).all()
    wanted: list[tuple[int, str]] = []
    for alarm, urls in rows:
        if not urls:
            continue
        if alarm.open_notified_at is None and alarm.opened_at > oldest:
            wanted.append((alarm.id, "open"))
        if alarm.cleared_at is not None and alarm.clear_notified_at is None:
            wanted.append((alarm.id, "clear"))
    return wanted
