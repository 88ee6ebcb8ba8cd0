"""Alarm tasks: send one alarm notification (Apprise, retried), and the scheduler's sweep for
devices that went silent."""

from __future__ import annotations

from typing import Any

from app import realtime
from app.db import get_database, utcnow
from app.egress import policy_for
from app.iot.alarms import notify, service
from app.iot.alarms.models import Alarm
from app.iot.alarms.settings import alarm_config
from app.iot.devices import notify_target_id
from app.iot.models import Device
from workers.celery_app import celery_app, settings_of

NOTIFY_RETRIES = 8


@celery_app.task(
    name=service.NOTIFY_TASK,
    bind=True,
    autoretry_for=(notify.NotifyFailed, OSError),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=NOTIFY_RETRIES,
)
def send_notification(self: Any, alarm_id: int, action: str) -> str:
    """Notify the device's Apprise URLs of one alarm transition; once (the alarm row records
    it), not at all if acknowledged/silenced meanwhile. Retries with backoff while the
    notification service fails."""
    settings = settings_of(celery_app)
    with get_database(settings.sqlalchemy_url).session() as session:
        alarm = session.get(Alarm, alarm_id)
        if alarm is None:
            return "gone"
        device = session.get(Device, alarm.device_id)
        if device is None:
            return "gone"
        return notify.notify_alarm(alarm, device, action, utcnow(), policy_for(settings))


@celery_app.task(name=service.TEST_TASK, ignore_result=True)
def send_test_notification(device_id: str, target_id: str | None, request_id: str) -> str:
    """A test notification asked for from the dashboard: sent once (no retry: the person asking
    waits for the answer, and asks again), its outcome published to the waiting API."""
    settings = settings_of(celery_app)
    with get_database(settings.sqlalchemy_url).session() as session:
        device = session.get(Device, device_id)
        urls = [str(u) for u in (device.notify_urls or [])] if device is not None else []
    if target_id is not None:
        urls = [u for u in urls if notify_target_id(u) == target_id]
    if device is None:
        outcome, detail = "failed", f"No thermometer {device_id}."
    else:
        outcome, detail = notify.send_test(device, urls, policy_for(settings))
    realtime.publish(
        settings,
        service.test_reply_channel(request_id),
        {"outcome": outcome, "detail": detail},
    )
    return outcome


@celery_app.task(name="iot_alarms.sweep_offline", ignore_result=True)
def sweep_offline() -> int:
    """Open ``device_offline`` for devices silent longer than SMOKEHOUSE_IOT_OFFLINE_SECONDS,
    and send again notifications lost between a commit and its enqueue; returns how many
    alarms changed."""
    settings = settings_of(celery_app)
    now = utcnow()
    with get_database(settings.sqlalchemy_url).session() as session:
        changes = service.sweep_offline(session, now, alarm_config(settings.iot.alarms))
        unsent = service.unsent_notifications(session, now)
        service.announce_changes(session, settings, changes)
    service.enqueue_notifications(settings, unsent)  # lost between a commit and its enqueue
    return len(changes)
