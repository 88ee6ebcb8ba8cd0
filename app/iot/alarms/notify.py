"""Alarm notifications through Apprise: one message per alarm transition (opened, cleared) to
the device's ``notify_urls`` (``ntfy://``, ``tgram://``, ``mailto://``, ``json://`` …).

Sent by a Celery task after the commit, never from the evaluation itself, so a slow or broken
notification service cannot hold up readings. At least once: the task marks the alarm notified
after sending; a crash in between sends again, which beats missing a "brisket is done".
"""

from __future__ import annotations

import logging
from datetime import datetime

import apprise

from app.iot.alarms.models import Alarm
from app.iot.models import Device

log = logging.getLogger("smokehouse.iot.alarms")

TITLES = {
    "target_reached": "Target reached",
    "high": "Too hot",
    "low": "Too cold",
    "pit_range": "Pit out of range",
    "probe_open": "Probe problem",
    "device_offline": "Thermometer offline",
    "stall": "Stall",
}


class NotifyFailed(RuntimeError):
    """Apprise could not deliver to every URL: the task retries."""


def render(alarm: Alarm, device: Device, action: str) -> tuple[str, str]:
    title = f"{device.name}: {TITLES.get(alarm.kind, alarm.kind)}"
    if action == "clear":
        return f"{title} (cleared)", f"Cleared: {alarm.message}"
    return title, alarm.message


def send(urls: list[str], title: str, body: str) -> None:
    """Deliver to every URL; raise :class:`NotifyFailed` if a URL is invalid or failed."""
    client = apprise.Apprise()
    bad = [url for url in urls if not client.add(url)]
    if len(client) and not client.notify(title=title, body=body):
        raise NotifyFailed(f"Apprise could not deliver {title!r} to every URL")
    if bad:
        raise NotifyFailed(f"{len(bad)} notify URL(s) are not valid Apprise URLs")


def notify_alarm(alarm: Alarm, device: Device, action: str, now: datetime) -> str:
    """Send the notification of one transition unless already sent or no longer wanted;
    returns what happened (``sent``, ``already``, ``quiet``, ``no_urls``)."""
    if action not in ("open", "clear"):
        raise ValueError(f"action must be open or clear, not {action!r}")
    field = "open_notified_at" if action == "open" else "clear_notified_at"
    if getattr(alarm, field) is not None:
        return "already"
    urls = [str(u) for u in (device.notify_urls or []) if u]
    silenced = alarm.silenced_until is not None and alarm.silenced_until > now
    acknowledged = alarm.acknowledged_at is not None  # no more notifications, not even the clear
    outcome = "no_urls" if not urls else "quiet" if silenced or acknowledged else "sent"
    if outcome == "sent":
        title, body = render(alarm, device, action)
        send(urls, title, body)
    setattr(alarm, field, now)
    return outcome
