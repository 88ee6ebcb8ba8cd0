"""``bus``: buses, rules and their targets, events, deliveries and dead letters; enable/disable a
rule and redrive a dead letter.

Every resolver reads through the bus services in a short session on a worker thread (the event
loop never waits on the database) and returns plain strawberry objects, never ORM rows, so nothing
lazy-loads after the session closed. Nested lists (a rule's targets and recent events, an event's
deliveries, a delivery's attempts) go through per-request dataloaders: a query over many rules
costs the same handful of SQL statements as one over a single rule.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, raiseload
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from app.bus import models
from app.bus.arns import DEFAULT_BUS
from app.bus.dead_letters import list_dead_letters, redrive
from app.bus.outbox import deliver_after_commit
from app.bus.service import get_bus, set_rule_state
from app.config import Settings
from app.graphql.context import CanWrite, Context, IsAuthenticated, in_session

T = TypeVar("T")
MAX_LIMIT = 500


def _limit(value: int) -> int:
    return max(1, min(value, MAX_LIMIT))


# --- types --------------------------------------------------------------------------------


@strawberry.type
class Bus:
    name: str
    description: str | None
    rule_count: int
    created_at: datetime


@strawberry.type
class Target:
    id: str
    arn: str
    input: str | None
    input_path: str | None
    input_transformer: JSON | None
    spec: JSON = strawberry.field(description="The whole AWS Target structure, as stored.")


@strawberry.type
class DeliveryAttempt:
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str = strawberry.field(description="succeeded, retry or failed")
    status_code: int | None
    error: str | None


@strawberry.type
class Delivery:
    id: str
    event_id: str
    bus: str
    rule_name: str
    target_id: str
    target_arn: str
    status: str = strawberry.field(description="pending, succeeded or dead")
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    completed_at: datetime | None

    @strawberry.field  # every try, oldest first
    async def attempt_log(self, info: Info[Context, Any]) -> list[DeliveryAttempt]:
        return await _loaders(info).attempts.load(self.id)

    @strawberry.field
    async def event(self, info: Info[Context, Any]) -> Event | None:
        return await _loaders(info).event.load(self.event_id)


@strawberry.type
class Event:
    id: str
    bus: str
    source: str
    detail_type: str
    time: datetime
    received_at: datetime
    envelope: JSON
    matched_rules: int
    replay_name: str | None

    @strawberry.field
    async def deliveries(self, info: Info[Context, Any]) -> list[Delivery]:
        return await _loaders(info).event_deliveries.load(self.id)


@strawberry.type
class Rule:
    rule_id: strawberry.Private[str]
    name: str
    bus: str
    state: str
    description: str | None
    event_pattern: JSON | None
    managed_by: str | None = strawberry.field(
        description="definitions:<file> for rules declared in YAML; null for API-created rules."
    )
    schedule_expression: str | None = strawberry.field(
        description="rate(…) or cron(…) for a scheduled rule; null for a pattern rule."
    )
    next_fire_at: datetime | None = strawberry.field(
        description="A scheduled rule's next tick (null when disabled or not scheduled)."
    )
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def targets(self, info: Info[Context, Any]) -> list[Target]:
        return await _loaders(info).targets.load(self.rule_id)

    @strawberry.field  # events this rule delivered to its targets, newest first
    async def recent_events(self, info: Info[Context, Any], limit: int = 10) -> list[Event]:
        return await _loaders(info).rule_events.load((self.rule_id, _limit(limit)))


@strawberry.type
class DeadLetter:
    id: int
    delivery_id: str
    event_id: str
    bus: str
    rule_name: str
    target_id: str
    error_code: str
    error_message: str
    attempts: int
    created_at: datetime
    redriven_at: datetime | None

    @strawberry.field
    async def delivery(self, info: Info[Context, Any]) -> Delivery | None:
        return await _loaders(info).delivery.load(self.delivery_id)


def _bus(row: models.EventBus, rule_count: int) -> Bus:
    return Bus(
        name=row.name, description=row.description, rule_count=rule_count, created_at=row.created_at
    )


def _target(row: models.Target) -> Target:
    spec = row.spec
    return Target(
        id=row.target_id,
        arn=row.arn,
        input=spec.get("Input"),
        input_path=spec.get("InputPath"),
        input_transformer=JSON(spec["InputTransformer"]) if "InputTransformer" in spec else None,
        spec=JSON(spec),
    )


def _rule(row: models.Rule) -> Rule:
    return Rule(
        rule_id=row.id,
        name=row.name,
        bus=row.bus_name,
        state=row.state,
        description=row.description,
        event_pattern=JSON(json.loads(row.event_pattern)) if row.event_pattern else None,
        managed_by=row.managed_by,
        schedule_expression=row.schedule_expression,
        next_fire_at=row.next_fire_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event(row: models.Event) -> Event:
    return Event(
        id=row.id,
        bus=row.bus_name,
        source=row.source,
        detail_type=row.detail_type,
        time=row.time,
        received_at=row.received_at,
        envelope=JSON(row.envelope),
        matched_rules=row.matched_rules,
        replay_name=row.replay_name,
    )


def _delivery(row: models.Delivery) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        bus=row.bus_name,
        rule_name=row.rule_name,
        target_id=row.target_id,
        target_arn=row.target_arn,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        completed_at=row.completed_at,
    )


def _attempt(row: models.DeliveryAttempt) -> DeliveryAttempt:
    return DeliveryAttempt(
        number=row.number,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
        status_code=row.status_code,
        error=row.error,
    )


def _dead_letter(row: models.DeadLetter) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        bus=row.bus_name,
        rule_name=row.rule_name,
        target_id=row.target_id,
        error_code=row.error_code,
        error_message=row.error_message,
        attempts=row.attempts,
        created_at=row.created_at,
        redriven_at=row.redriven_at,
    )


# --- dataloaders --------------------------------------------------------------------------


class BusLoaders:
    """One set per request (see :class:`app.graphql.context.Context`): one query per batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets = DataLoader[str, list[Target]](load_fn=self._targets)
        self.rule_events = DataLoader[tuple[str, int], list[Event]](load_fn=self._rule_events)
        self.event_deliveries = DataLoader[str, list[Delivery]](load_fn=self._event_deliveries)
        self.attempts = DataLoader[str, list[DeliveryAttempt]](load_fn=self._attempts)
        self.event = DataLoader[str, Event | None](load_fn=self._events)
        self.delivery = DataLoader[str, Delivery | None](load_fn=self._deliveries)

    async def _targets(self, rule_ids: list[str]) -> list[list[Target]]:
        def work(session: Session) -> list[list[Target]]:
            rows = session.scalars(
                select(models.Target)
                .where(models.Target.rule_id.in_(rule_ids))
                .order_by(models.Target.position, models.Target.id)
            )
            return _grouped(rule_ids, ((r.rule_id, _target(r)) for r in rows))

        return await in_session(self.settings, work)

    async def _rule_events(self, keys: list[tuple[str, int]]) -> list[list[Event]]:
        def work(session: Session) -> list[list[Event]]:
            found: dict[tuple[str, int], list[Event]] = {}
            for limit in {limit for _, limit in keys}:
                rule_ids = [rule_id for rule_id, wanted in keys if wanted == limit]
                for rule_id, event in _recent_events(session, rule_ids, limit):
                    found.setdefault((rule_id, limit), []).append(_event(event))
            return [found.get(key, []) for key in keys]

        return await in_session(self.settings, work)

    async def _event_deliveries(self, event_ids: list[str]) -> list[list[Delivery]]:
        def work(session: Session) -> list[list[Delivery]]:
            rows = session.scalars(
                select(models.Delivery)
                .where(models.Delivery.event_id.in_(event_ids))
                .order_by(models.Delivery.created_at, models.Delivery.rule_name, models.Delivery.id)
            )
            return _grouped(event_ids, ((r.event_id, _delivery(r)) for r in rows))

        return await in_session(self.settings, work)

    async def _attempts(self, delivery_ids: list[str]) -> list[list[DeliveryAttempt]]:
        def work(session: Session) -> list[list[DeliveryAttempt]]:
            rows = session.scalars(
                select(models.DeliveryAttempt)
                .where(models.DeliveryAttempt.delivery_id.in_(delivery_ids))
                .order_by(models.DeliveryAttempt.id)
            )
            return _grouped(delivery_ids, ((r.delivery_id, _attempt(r)) for r in rows))

        return await in_session(self.settings, work)

    async def _events(self, event_ids: list[str]) -> list[Event | None]:
        def work(session: Session) -> list[Event | None]:
            rows = session.scalars(select(models.Event).where(models.Event.id.in_(event_ids)))
            by_id = {r.id: _event(r) for r in rows}
            return [by_id.get(i) for i in event_ids]

        return await in_session(self.settings, work)

    async def _deliveries(self, delivery_ids: list[str]) -> list[Delivery | None]:
        def work(session: Session) -> list[Delivery | None]:
            rows = session.scalars(
                select(models.Delivery).where(models.Delivery.id.in_(delivery_ids))
            )
            by_id = {r.id: _delivery(r) for r in rows}
            return [by_id.get(i) for i in delivery_ids]

        return await in_session(self.settings, work)


def _loaders(info: Info[Context, Any]) -> BusLoaders:
    return info.context.loaders(BusLoaders)


def _grouped(keys: Sequence[str], pairs: Any) -> list[Any]:
    groups: dict[str, list[Any]] = defaultdict(list)
    for key, item in pairs:
        groups[key].append(item)
    return [groups.get(key, []) for key in keys]


def _recent_events(
    session: Session, rule_ids: list[str], limit: int
) -> list[tuple[str, models.Event]]:
    """The newest ``limit`` distinct events per rule, in one statement (a window function)."""
    D = models.Delivery  # noqa: N806
    per_event = (
        select(D.rule_id, D.event_id, func.max(D.created_at).label("at"))
        .where(D.rule_id.in_(rule_ids))
        .group_by(D.rule_id, D.event_id)
        .subquery()
    )
    ranked = select(
        per_event.c.rule_id,
        per_event.c.event_id,
        func.row_number()
        .over(partition_by=per_event.c.rule_id, order_by=per_event.c.at.desc())
        .label("rank"),
    ).subquery()
    statement = (
        select(ranked.c.rule_id, models.Event)
        .join(models.Event, models.Event.id == ranked.c.event_id)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.rule_id, ranked.c.rank)
    )
    return [(rule_id, event) for rule_id, event in session.execute(statement)]


# --- queries ------------------------------------------------------------------------------


async def resolve_buses(info: Info[Context, Any]) -> list[Bus]:
    def work(session: Session) -> list[Bus]:
        grouped = select(models.Rule.bus_name, func.count()).group_by(models.Rule.bus_name)
        counts: dict[str, int] = dict(session.execute(grouped).all())
        buses = session.scalars(select(models.EventBus).order_by(models.EventBus.name))
        return [_bus(b, counts.get(b.name, 0)) for b in buses]

    return await in_session(info.context.settings, work)


async def resolve_rules(info: Info[Context, Any], bus: str = DEFAULT_BUS) -> list[Rule]:
    def work(session: Session) -> list[Rule]:
        name = get_bus(session, bus).name  # ResourceNotFoundException for an unknown bus
        rows = session.scalars(
            select(models.Rule)
            .where(models.Rule.bus_name == name)
            .options(raiseload(models.Rule.targets))  # the targets loader batches them
            .order_by(models.Rule.name)
        )
        return [_rule(r) for r in rows]

    return await in_session(info.context.settings, work)


async def resolve_rule(info: Info[Context, Any], name: str, bus: str = DEFAULT_BUS) -> Rule | None:
    def work(session: Session) -> Rule | None:
        row = session.scalar(
            select(models.Rule)
            .where(models.Rule.bus_name == bus, models.Rule.name == name)
            .options(raiseload(models.Rule.targets))
        )
        return _rule(row) if row else None

    return await in_session(info.context.settings, work)


async def resolve_events(
    info: Info[Context, Any],
    bus: str = DEFAULT_BUS,
    limit: int = 50,
    # "source" would clash with the resolver's own root argument inside strawberry.
    source_: Annotated[str | None, strawberry.argument(name="source")] = None,
) -> list[Event]:
    def work(session: Session) -> list[Event]:
        statement = select(models.Event).where(models.Event.bus_name == bus)
        if source_ is not None:
            statement = statement.where(models.Event.source == source_)
        statement = statement.order_by(models.Event.received_at.desc(), models.Event.id.desc())
        return [_event(e) for e in session.scalars(statement.limit(_limit(limit)))]

    return await in_session(info.context.settings, work)


async def resolve_deliveries(
    info: Info[Context, Any], status: str | None = None, limit: int = 50
) -> list[Delivery]:
    def work(session: Session) -> list[Delivery]:
        statement = select(models.Delivery)
        if status is not None:
            statement = statement.where(models.Delivery.status == status)
        statement = statement.order_by(
            models.Delivery.created_at.desc(), models.Delivery.id.desc()
        ).limit(_limit(limit))
        return [_delivery(d) for d in session.scalars(statement)]

    return await in_session(info.context.settings, work)


async def resolve_dead_letters(
    info: Info[Context, Any], limit: int = 50, include_redriven: bool = False
) -> list[DeadLetter]:
    def work(session: Session) -> list[DeadLetter]:
        rows = list_dead_letters(session, limit=_limit(limit), include_redriven=include_redriven)
        return [_dead_letter(r) for r in rows]

    return await in_session(info.context.settings, work)


@strawberry.type
class BusQuery:
    buses: list[Bus] = strawberry.field(
        resolver=resolve_buses, permission_classes=[IsAuthenticated]
    )
    rules: list[Rule] = strawberry.field(
        resolver=resolve_rules, permission_classes=[IsAuthenticated]
    )
    rule: Rule | None = strawberry.field(
        resolver=resolve_rule, permission_classes=[IsAuthenticated]
    )
    events: list[Event] = strawberry.field(
        resolver=resolve_events,
        permission_classes=[IsAuthenticated],
        description="Events on a bus, most recently received first.",
    )
    deliveries: list[Delivery] = strawberry.field(
        resolver=resolve_deliveries,
        permission_classes=[IsAuthenticated],
        description="Deliveries (any bus), newest first; filter by status.",
    )
    dead_letters: list[DeadLetter] = strawberry.field(
        resolver=resolve_dead_letters,
        permission_classes=[IsAuthenticated],
        description="Dead-lettered deliveries, newest first.",
    )


# --- mutations ----------------------------------------------------------------------------


async def _set_state(info: Info[Context, Any], bus: str, name: str, state: str) -> Rule:
    def work(session: Session) -> Rule:
        rule = set_rule_state(session, bus, name, state)
        session.flush()  # so updated_at is the new one
        return _rule(rule)

    return await in_session(info.context.settings, work)


async def resolve_enable_rule(info: Info[Context, Any], name: str, bus: str = DEFAULT_BUS) -> Rule:
    return await _set_state(info, bus, name, "ENABLED")


async def resolve_disable_rule(info: Info[Context, Any], name: str, bus: str = DEFAULT_BUS) -> Rule:
    return await _set_state(info, bus, name, "DISABLED")


async def resolve_redrive_dead_letter(info: Info[Context, Any], id: int) -> Delivery:
    settings = info.context.settings

    def work(session: Session) -> Delivery:
        delivery = redrive(session, id)
        deliver_after_commit(session, settings, [delivery.id])  # enqueued after the commit
        return _delivery(delivery)

    return await in_session(settings, work)


@strawberry.type
class BusMutation:
    enable_rule: Rule = strawberry.field(
        resolver=resolve_enable_rule, permission_classes=[CanWrite]
    )
    disable_rule: Rule = strawberry.field(
        resolver=resolve_disable_rule, permission_classes=[CanWrite]
    )
    redrive_dead_letter: Delivery = strawberry.field(
        resolver=resolve_redrive_dead_letter,
        permission_classes=[CanWrite],
        description="Send a dead-lettered delivery again with a fresh retry budget.",
    )
