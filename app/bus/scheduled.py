"""Scheduled rules: a rule with a ``ScheduleExpression`` puts one ``Scheduled Event`` per tick.

Each scheduled rule keeps its next tick in ``rules.next_fire_at``. The leading scheduler runs
:class:`ScheduledRules` every 0.2 s (a tick hook, ``app.broker.beat``; embedded mode runs the same
scheduler; the loop is :class:`app.common.due.DueFirer`). A tick is fired by one transaction that

1. moves ``next_fire_at`` from the tick to the next one with a compare-and-set
   (``UPDATE … WHERE id = :rule AND next_fire_at = :tick``), and
2. inserts the event and one pending delivery per target of the rule (the normal bus path: the
   deliveries are enqueued after the commit, the outbox sweeper re-enqueues lost sends).

Two firers that see the same due tick (two schedulers during a takeover, a stalled leader that
wakes up) both try the compare-and-set; PostgreSQL re-checks the WHERE on the row the first one
locked, so the second updates nothing and writes nothing; SQLite has one writer. A tick is
therefore fired exactly once however many schedulers run, and never lost to a crash: until the
transaction commits the tick is still due, after it the event and its deliveries exist.

No backfill (as AWS): after a scheduler outage, of the ticks missed while nobody led only the
latest can fire, and only if it is at most ``SMOKEHOUSE_SCHEDULER_MISFIRE_GRACE_SECONDS`` (60 s)
late -- so a restart or a takeover between two ticks neither skips nor doubles the tick that fell
in it, and a long outage puts nothing old. Counting resumes from now.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.bus.arns import Scope
from app.bus.errors import Validation
from app.bus.events import Routed, delivery_row, event_row, store
from app.bus.models import Rule
from app.bus.outbox import deliver_after_commit
from app.common.due import DueFirer, misfired
from app.common.schedule_expressions import InvalidExpression, next_fire, parse
from app.config import Settings
from app.db import Database, utcnow

log = logging.getLogger("smokehouse.bus")

INVALID = "Parameter ScheduleExpression is not valid."
#: A firer that was down this many ticks stops counting them one by one and resumes from now.
MAX_CATCH_UP_STEPS = 10_000


def check_schedule_expression(text: str) -> None:
    """AWS's check of a rule's ``ScheduleExpression`` (``rate(…)`` or ``cron(…)``)."""
    try:
        parse(text)
    except InvalidExpression:
        raise Validation(INVALID) from None


def schedule_next_tick(rule: Rule, now: datetime | None = None) -> None:
    """Give an enabled scheduled rule its first tick (counting from ``now``), if it has none;
    a pattern rule or a disabled one has none."""
    if rule.schedule_expression is None or rule.state != "ENABLED":
        rule.next_fire_at = None
        return
    if rule.next_fire_at is not None:
        return
    now = now or utcnow()
    rule.next_fire_at = next_fire(parse(rule.schedule_expression), now, anchor=now)


def scheduled_event(scope: Scope, rule: Rule, tick: datetime) -> dict[str, Any]:
    """The envelope EventBridge puts for a rule's tick."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": scope.account_id,
        "time": tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": scope.region,
        "resources": [scope.rule_arn(rule.bus_name, rule.name)],
        "detail": {},
    }


def _latest_due(rule: Rule, tick: datetime, now: datetime) -> tuple[datetime, datetime | None]:
    """(the latest tick ≤ ``now`` from ``tick`` on, the first tick after ``now``)."""
    expression = parse(rule.schedule_expression or "")
    latest = tick
    for _ in range(MAX_CATCH_UP_STEPS):
        following = next_fire(expression, latest, anchor=tick)
        if following is None or following > now:
            return latest, following
        latest = following
    return latest, next_fire(expression, now, anchor=now)


def fire_rule(
    session: Session, rule_id: str, tick: datetime, now: datetime, settings: Settings
) -> str | None:
    """Fire ``rule_id``'s due ``tick`` in the caller's transaction; the event id, or ``None``
    if another firer already moved the tick on, the rule changed, or the latest due tick is
    past the misfire grace (then skipped: no backfill)."""
    rule = session.get(Rule, rule_id)
    if rule is None or rule.schedule_expression is None or rule.state != "ENABLED":
        return None
    try:
        fired_tick, following = _latest_due(rule, tick, now)
    except InvalidExpression:  # stored before validation existed: stop it, loudly
        log.error("rule %s has an invalid schedule %r", rule.name, rule.schedule_expression)
        following, fired_tick = None, tick
    moved = session.execute(
        update(Rule)
        .where(Rule.id == rule_id, Rule.next_fire_at == tick)
        .values(next_fire_at=following)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another firer fired this tick
    if misfired(fired_tick, now, settings.scheduler.misfire_grace_seconds):
        log.warning("rule %s missed its tick at %s (no backfill)", rule.name, fired_tick)
        return None
    scope = Scope(region=rule.region or settings.region, account_id=settings.account_id)
    envelope = scheduled_event(scope, rule, fired_tick)
    targets = [(rule.id, rule.name, t.target_id, t.arn, dict(t.spec)) for t in rule.targets]
    return put_direct(session, settings, rule.bus_name, envelope, fired_tick, now, targets)


def put_direct(
    session: Session,
    settings: Settings,
    bus_name: str,
    envelope: dict[str, Any],
    time: datetime,
    now: datetime,
    targets: list[tuple[str, str, str, str, dict[str, Any]]],
) -> str:
    """Store ``envelope`` and one pending delivery per ``(rule id, rule name, target id, arn,
    spec)`` -- no matching: the caller names the targets (a scheduled rule, a Scheduler
    schedule) -- enqueued after the caller's transaction commits. The event id."""
    deliveries = [
        delivery_row(
            str(uuid.uuid4()),
            envelope["id"],
            bus_name,
            (rule_id, name),
            (target_id, arn, spec),
            now,
        )
        for rule_id, name, target_id, arn, spec in targets
    ]
    routed = Routed(event_row(bus_name, envelope, time, now, 1), deliveries)
    store(session, [routed])
    deliver_after_commit(session, settings, routed.delivery_ids)
    return str(envelope["id"])


class ScheduledRules(DueFirer):
    """The leading scheduler's tick hook: fire due scheduled rules."""

    what = "scheduled rule ticks"

    def due(self, session: Session, now: datetime, limit: int) -> Sequence[tuple[str, datetime]]:
        rows = session.execute(
            select(Rule.id, Rule.next_fire_at)
            .where(
                Rule.schedule_expression.is_not(None),
                Rule.state == "ENABLED",
                Rule.next_fire_at <= now,
            )
            .order_by(Rule.next_fire_at)
            .limit(limit)
        ).all()
        return [(rule_id, tick) for rule_id, tick in rows if tick is not None]

    def fire(self, session: Session, item_id: str, tick: datetime, now: datetime) -> bool:
        return fire_rule(session, item_id, tick, now, self.settings) is not None


def fire_due(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Fire every due tick of every enabled scheduled rule (one pass of the hook)."""
    return ScheduledRules(settings).fire_due(db, now)
