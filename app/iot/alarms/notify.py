"""Alarm notifications through Apprise: one message per alarm transition (opened, cleared) to
the device's ``notify_urls`` (``ntfy://``, ``tgram://``, ``mailto://``, ``json://`` …).

Sent by a Celery task after the commit, never from the evaluation itself, so a slow or broken
notification service cannot hold up readings. At least once: the task marks the alarm notified
after sending; a crash in between sends again, which beats missing a "brisket is done".

Every URL's target host goes through the egress policy (:mod:`app.egress`) first: the host a
self-hosted service URL names (``json://``, ``ntfy://host``, ``gotify://``, ``mqtt://``, the SMTP
server of ``mailto://``...) is resolved and checked; a refused one is logged, not sent to, and the
transition is recorded as handled with the outcome ``refused`` (retrying cannot help). Services
with a fixed public API (``tgram://``, ``discord://``...) carry no user-chosen host.

Apprise connects by itself; its HTTP plugins (``requests``/urllib3) are pinned while it sends
(:func:`app.egress.sockets.pinned`): every connection, redirects included, goes only to an
address the policy checked, so DNS rebinding and a redirect to a refused address fail the send
(outcome ``refused``). Plugins that do not use urllib3 (``mailto://`` over smtplib,
``mqtt://`` over paho) get the check of their host before sending but are not pinned. The send
is given ``SMOKEHOUSE_EGRESS_TIMEOUT_SECONDS`` (Apprise stops waiting after that).
"""

from __future__ import annotations

import logging
from datetime import datetime

import apprise

from app.egress import EgressError, EgressPolicy
from app.egress.sockets import pinned
from app.iot.alarms.models import Alarm
from app.iot.devices import notify_display
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


def targets(url: str) -> list[tuple[str, int]]:
    """The (host, port) an Apprise URL makes Apprise connect to, when the URL chooses it."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return []
    found: list[tuple[str, int]] = []
    smtp_host = getattr(plugin, "smtp_host", None)
    if isinstance(smtp_host, str) and smtp_host:
        found.append((smtp_host, int(getattr(plugin, "port", None) or 587)))
        return found
    if isinstance(getattr(type(plugin), "notify_url", None), str):
        return found  # a fixed public API; the "host" of the URL is a token or an id
    host = getattr(plugin, "host", None)
    if isinstance(host, str) and host:
        secure = bool(getattr(plugin, "secure", False))
        port = getattr(plugin, "port", None) or (443 if secure else 80)
        found.append((host.strip("[]"), int(port)))
    return found


def refused(policy: EgressPolicy, url: str) -> str | None:
    """Why the policy refuses this Apprise URL's destination, or None."""
    for host, port in targets(url):
        try:
            policy.check(host, port)
        except EgressError as exc:
            return str(exc)
    return None


def send(urls: list[str], title: str, body: str, policy: EgressPolicy) -> list[str]:
    """Deliver to every URL (HTTP pinned to checked addresses); returns the refusals met on the
    way (a redirect or a new DNS answer to a refused address). Raises :class:`NotifyFailed` if
    a URL is invalid or failed otherwise."""
    client = apprise.Apprise()
    bad = [url for url in urls if not client.add(url)]
    with pinned(policy) as refusals:
        delivered = not len(client) or client.notify(
            title=title, body=body, timeout=policy.timeout_seconds
        )
    if refusals:
        return refusals
    if not delivered:
        raise NotifyFailed(f"Apprise could not deliver {title!r} to every URL")
    if bad:
        raise NotifyFailed(f"{len(bad)} notify URL(s) are not valid Apprise URLs")
    return []


def deliver(
    urls: list[str], title: str, body: str, policy: EgressPolicy
) -> tuple[list[str], list[str]]:
    """Send to every URL the egress policy allows: ``(the URLs sent to, the refusals)``, the
    refusals both the policy's own and those met while sending (a redirect, a new DNS answer).
    Raises :class:`NotifyFailed` as :func:`send` does."""
    allowed: list[str] = []
    refusals: list[str] = []
    for url in urls:
        reason = refused(policy, url)
        if reason is None:
            allowed.append(url)
        else:
            refusals.append(reason)
    if allowed:
        refusals += send(allowed, title, body, policy)
    return allowed, refusals


def notify_alarm(
    alarm: Alarm, device: Device, action: str, now: datetime, policy: EgressPolicy
) -> str:
    """Send the notification of one transition unless already sent or no longer wanted;
    returns what happened (``sent``, ``already``, ``quiet``, ``no_urls``, ``refused`` when the
    egress policy refused a URL — the others are still sent)."""
    if action not in ("open", "clear"):
        raise ValueError(f"action must be open or clear, not {action!r}")
    field = "open_notified_at" if action == "open" else "clear_notified_at"
    if getattr(alarm, field) is not None:
        return "already"
    urls = [str(u) for u in (device.notify_urls or []) if u]
    silenced = alarm.silenced_until is not None and alarm.silenced_until > now
    acknowledged = alarm.acknowledged_at is not None  # no more notifications, not even the clear
    outcome = "no_urls" if not urls else "quiet" if silenced or acknowledged else "sent"
    allowed: list[str] = []
    if outcome == "sent":
        allowed, refusals = deliver(urls, *render(alarm, device, action), policy)
        for reason in refusals:  # the URL itself may hold a token: name the alarm, not the URL
            log.warning(
                "alarm %s %s notification refused for device %s: %s",
                alarm.id,
                action,
                device.id,
                reason,
            )
            outcome = "refused"
    setattr(alarm, field, now)
    alarm.notifications = [
        *(alarm.notifications or []),
        {
            "action": action,
            "at": now.isoformat(),
            "outcome": outcome,
            "targets": [notify_display(u) for u in allowed],  # masked: where, not a token
        },
    ]
    return outcome


def send_test(device: Device, urls: list[str], policy: EgressPolicy) -> tuple[str, str]:
    """A test notification to ``urls`` (through the egress policy, as an alarm's): its outcome
    (``sent``, ``refused``, ``failed``, ``no_urls``) and what to tell the person who asked."""
    if not urls:
        return "no_urls", "This thermometer has no notification targets."
    title = f"{device.name}: test notification"
    body = "Alarms of this thermometer will reach you here."
    try:
        allowed, refusals = deliver(urls, title, body, policy)
    except NotifyFailed as exc:
        return "failed", str(exc)
    if refusals:  # a URL's own text may hold a token: say why, not which
        return "refused", f"Refused by the egress policy: {'; '.join(refusals)}"
    return "sent", f"Sent to {len(allowed)} target(s)."
