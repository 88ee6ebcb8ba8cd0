"""Fire due schedules: each due fire becomes one delivery to the schedule's target, exactly once.

Run by the leading scheduler every 0.2 s (a tick hook registered by :mod:`app.wiring`). As for
scheduled rules (:mod:`app.bus.scheduled`), one transaction moves ``next_fire_at`` on by
compare-and-set and stores the event and its delivery, so two firers never fire one due time
twice and a crash before the commit leaves it due. The delivery then runs through the bus's
delivery path (target registry, the schedule's ``RetryPolicy``, dead letters). No backfill: after
an outage the due fire is fired once and counting resumes from now.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.bus.scheduled import put_direct
from app.config import Settings
from app.db import Database, get_database, utcnow
from app.schedules.models import Schedule
from app.schedules.service import first_fire, schedule_arn

log = logging.getLogger("smokehouse.schedules")

BATCH = 200
TARGET_ID = "scheduler"


def _event(schedule: Schedule, account: str, tick: datetime) -> dict[str, Any]:
    target = schedule.target
    resources = [schedule_arn(schedule.region, account, schedule.group_name, schedule.name)]
    envelope: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": account,
        "time": tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": schedule.region,
        "resources": resources,
        "detail": {},
    }
    parameters = target.get("EventBridgeParameters")
    if parameters:  # PutEvents to a bus: the Input is the event's detail
        envelope["detail-type"] = parameters["DetailType"]
        envelope["source"] = parameters["Source"]
        try:
            envelope["detail"] = json.loads(target.get("Input") or "{}")
        except ValueError:
            envelope["detail"] = {}
    return envelope


def _spec(schedule: Schedule) -> dict[str, Any]:
    target = schedule.target
    spec: dict[str, Any] = {"Id": TARGET_ID, "Arn": target["Arn"]}
    if target.get("Input") is not None and not target.get("EventBridgeParameters"):
        spec["Input"] = target["Input"]
    for key in ("RetryPolicy", "DeadLetterConfig", "RoleArn"):
        if target.get(key) is not None:
            spec[key] = target[key]
    return spec


def fire_schedule(
    session: Session, schedule_id: str, tick: datetime, now: datetime, settings: Settings
) -> str | None:
    """Fire ``schedule_id``'s due ``tick`` in the caller's transaction; the event id, or
    ``None`` when another firer already did (or the schedule changed)."""
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or schedule.state != "ENABLED" or schedule.next_fire_at != tick:
        return None
    first_fire(schedule, max(now, tick))  # computes the following fire on the instance
    following = schedule.next_fire_at
    session.expire(schedule, ["next_fire_at"])
    moved = session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_fire_at == tick)
        .values(next_fire_at=following)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None
    envelope = _event(schedule, settings.account_id, tick)
    rule_name = f"schedule/{schedule.group_name}/{schedule.name}"[:64]
    event_id = put_direct(
        session,
        settings,
        "default",
        envelope,
        tick,
        now,
        [(schedule.id, rule_name, TARGET_ID, schedule.target["Arn"], _spec(schedule))],
    )
    if following is None and schedule.action_after_completion == "DELETE":
        session.delete(schedule)
    return event_id


def fire_due(db: Database, settings: Settings, now: datetime | None = None) -> int:
    now = now or utcnow()
    with db.session() as session:
        due = session.execute(
            select(Schedule.id, Schedule.next_fire_at)
            .where(Schedule.state == "ENABLED", Schedule.next_fire_at <= now)
            .order_by(Schedule.next_fire_at)
            .limit(BATCH)
        ).all()
    fired = 0
    for schedule_id, tick in due:
        if tick is None:
            continue
        with db.session() as session:
            if fire_schedule(session, schedule_id, tick, now, settings) is not None:
                fired += 1
    return fired


class ScheduleFirer:
    """The leading scheduler's tick hook for EventBridge Scheduler schedules."""

    interval = 0.2

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failing_since: float | None = None

    def __call__(self, celery: Any) -> int:
        try:
            fired = fire_due(get_database(self.settings.sqlalchemy_url), self.settings)
        except Exception as exc:  # database away: the fires stay due
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                log.warning("cannot fire schedules (retrying): %s", exc)
            return 0
        self.failing_since = None
        if fired:
            log.info("fired %d schedule(s)", fired)
        return fired
