"""Fire due schedules: each due fire becomes one delivery to the schedule's target, exactly once.

Run by the leading scheduler every 0.2 s (a tick hook registered by :mod:`app.wiring`). As for
scheduled rules (:mod:`app.bus.scheduled`), one transaction moves ``next_fire_at`` on by
compare-and-set and stores the event and its delivery, so two firers never fire one due time
twice and a crash before the commit leaves it due. The delivery then runs through the bus's
delivery path (target registry, the schedule's ``RetryPolicy``, dead letters). No backfill (see
:mod:`app.common.due`): a recurring fire more than the misfire grace (60 s) late is skipped and
counting resumes from now. A one-time ``at()`` fire is fired however late: it has no later fire
that would stand in for it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.bus.scheduled import put_direct
from app.common.due import DueFirer, misfired
from app.config import Settings
from app.db import Database
from app.schedules.models import Schedule
from app.schedules.service import first_fire, schedule_arn

log = logging.getLogger("smokehouse.schedules")

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
    recurring = not schedule.expression.startswith("at(")
    session.expire(schedule, ["next_fire_at"])
    moved = session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_fire_at == tick)
        .values(next_fire_at=following)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None
    if recurring and misfired(tick, now, settings.scheduler.misfire_grace_seconds):
        log.warning(
            "schedule %s/%s missed its fire at %s (no backfill)",
            schedule.group_name,
            schedule.name,
            tick,
        )
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


class ScheduleFirer(DueFirer):
    """The leading scheduler's tick hook for EventBridge Scheduler schedules."""

    what = "schedule fires"

    def due(self, session: Session, now: datetime, limit: int) -> Sequence[tuple[str, datetime]]:
        rows = session.execute(
            select(Schedule.id, Schedule.next_fire_at)
            .where(Schedule.state == "ENABLED", Schedule.next_fire_at <= now)
            .order_by(Schedule.next_fire_at)
            .limit(limit)
        ).all()
        return [(schedule_id, tick) for schedule_id, tick in rows if tick is not None]

    def fire(self, session: Session, item_id: str, tick: datetime, now: datetime) -> bool:
        return fire_schedule(session, item_id, tick, now, self.settings) is not None


def fire_due(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Fire every due schedule (one pass of the hook)."""
    return ScheduleFirer(settings).fire_due(db, now)
