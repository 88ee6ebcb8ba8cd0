"""Buses, rules and targets: EventBridge's control plane over our tables.

Services take a Session and never commit. Every change to a bus's rules or targets bumps the bus's
``revision`` in the same transaction, which is how compiled matchers cached in other processes
learn they are stale.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.bus.arns import DEFAULT_BUS, Scope, bus_name_from
from app.bus.errors import (
    InvalidEventPatternError,
    LimitExceeded,
    ResourceAlreadyExists,
    ResourceNotFound,
    Validation,
)
from app.bus.models import EventBus, Rule, Target
from app.bus.patterns import InvalidEventPattern, parse_pattern
from app.bus.scheduled import check_schedule_expression, schedule_next_tick
from app.bus.targets import validate_target

MAX_TARGETS_PER_RULE = 5
RULE_NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
BUS_NAME = re.compile(r"^[/\.\-_A-Za-z0-9]{1,256}$")
TARGET_ID = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
RULE_STATES = ("ENABLED", "DISABLED")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_token: str | None


def paginate(statement: Any, session: Session, limit: int | None, token: str | None) -> Page:
    limit = max(1, min(int(limit or 100), 100))
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise Validation("The NextToken is not valid.") from None
    rows = list(session.scalars(statement.offset(offset).limit(limit + 1)))
    more = len(rows) > limit
    return Page(rows[:limit], str(offset + limit) if more else None)


# --- buses --------------------------------------------------------------------------------


def get_bus(session: Session, name_or_arn: str | None) -> EventBus:
    name = bus_name_from(name_or_arn)
    bus = session.get(EventBus, name)
    if bus is None:
        raise ResourceNotFound(f"Event bus {name} does not exist.")
    return bus


def create_bus(session: Session, name: str, description: str | None = None) -> EventBus:
    if not BUS_NAME.match(name or "") or "/" in name:
        raise Validation(f"Event bus name {name!r} is not valid.")
    if name == DEFAULT_BUS or name.startswith("aws."):
        raise Validation(f"Event bus name must not be {DEFAULT_BUS} or start with 'aws.'.")
    if session.get(EventBus, name) is not None:
        raise ResourceAlreadyExists(f"Event bus {name} already exists.")
    bus = EventBus(name=name, description=description, revision=0)
    session.add(bus)
    session.flush()
    return bus


def list_buses(session: Session, prefix: str | None, limit: int | None, token: str | None) -> Page:
    statement = select(EventBus).order_by(EventBus.name)
    if prefix:
        statement = statement.where(EventBus.name.startswith(prefix, autoescape=True))
    return paginate(statement, session, limit, token)


def delete_bus(session: Session, name: str) -> None:
    if name == DEFAULT_BUS:
        raise Validation("Cannot delete event bus default.")
    bus = session.get(EventBus, name)
    if bus is not None:  # DeleteEventBus is idempotent on AWS
        session.delete(bus)


def touch(session: Session, bus_name: str) -> None:
    session.execute(
        update(EventBus).where(EventBus.name == bus_name).values(revision=EventBus.revision + 1)
    )


# --- rules --------------------------------------------------------------------------------


def canonical_pattern(pattern: str | dict[str, Any] | None) -> str | None:
    """Validate an event pattern (InvalidEventPatternException) and keep the user's text."""
    if pattern is None:
        return None
    text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    try:
        parse_pattern(text)
    except InvalidEventPattern as exc:
        raise InvalidEventPatternError(exc.message) from None
    return text


def get_rule(session: Session, bus_name: str | None, name: str) -> Rule:
    bus = bus_name_from(bus_name)
    rule = session.scalar(select(Rule).where(Rule.bus_name == bus, Rule.name == name))
    if rule is None:
        raise ResourceNotFound(f"Rule {name} does not exist on EventBus {bus}.")
    return rule


def put_rule(
    session: Session,
    *,
    name: str,
    bus_name: str | None = None,
    event_pattern: str | dict[str, Any] | None = None,
    schedule_expression: str | None = None,
    state: str | None = None,
    description: str | None = None,
    role_arn: str | None = None,
    managed_by: str | None = None,
    region: str | None = None,
) -> Rule:
    """Create or update a rule (PutRule is an upsert), validating the pattern first. ``region``
    is the caller's: a scheduled rule's events name the rule's ARN in it."""
    if not RULE_NAME.match(name or ""):
        raise Validation(
            f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
        )
    if event_pattern is None and schedule_expression is None:
        raise Validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
    if schedule_expression is not None:
        check_schedule_expression(schedule_expression)
        if bus_name_from(bus_name) != DEFAULT_BUS:
            raise Validation("ScheduleExpression is supported only on the default event bus.")
    if state is not None and state not in RULE_STATES:
        raise Validation(f"Rule state {state!r} is not valid; use ENABLED or DISABLED.")
    pattern = canonical_pattern(event_pattern)
    bus = get_bus(session, bus_name)
    rule = session.scalar(select(Rule).where(Rule.bus_name == bus.name, Rule.name == name))
    if rule is None:
        rule = Rule(id=str(uuid.uuid4()), bus_name=bus.name, name=name, state="ENABLED")
        session.add(rule)
    rule.event_pattern = pattern
    if schedule_expression != rule.schedule_expression:
        rule.next_fire_at = None  # the new expression starts counting now
    rule.schedule_expression = schedule_expression
    rule.description = description
    rule.role_arn = role_arn
    if state is not None:
        rule.state = state
    if managed_by is not None:
        rule.managed_by = managed_by
    if region is not None:
        rule.region = region
    schedule_next_tick(rule)
    touch(session, bus.name)
    session.flush()
    return rule


def set_rule_state(session: Session, bus_name: str | None, name: str, state: str) -> Rule:
    rule = get_rule(session, bus_name, name)
    if rule.state != state:
        rule.state = state
        rule.next_fire_at = None  # re-enabled: no backfill, the schedule counts from now
        schedule_next_tick(rule)
        touch(session, rule.bus_name)
    return rule


def delete_rule(session: Session, bus_name: str | None, name: str, force: bool = False) -> None:
    bus = bus_name_from(bus_name)
    rule = session.scalar(select(Rule).where(Rule.bus_name == bus, Rule.name == name))
    if rule is None:
        return  # DeleteRule of a missing rule succeeds on AWS
    if rule.targets and not force:
        raise Validation("Rule can't be deleted since it has targets.")
    session.delete(rule)
    touch(session, bus)


def list_rules(
    session: Session,
    bus_name: str | None,
    prefix: str | None,
    limit: int | None,
    token: str | None,
) -> Page:
    bus = get_bus(session, bus_name)
    statement = select(Rule).where(Rule.bus_name == bus.name).order_by(Rule.name)
    if prefix:
        statement = statement.where(Rule.name.startswith(prefix, autoescape=True))
    return paginate(statement, session, limit, token)


def rule_arn(scope: Scope, rule: Rule) -> str:
    return scope.rule_arn(rule.bus_name, rule.name)


# --- targets ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedTarget:
    target_id: str
    code: str
    message: str


def put_targets(
    session: Session, bus_name: str | None, rule_name: str, targets: Sequence[dict[str, Any]]
) -> list[FailedTarget]:
    """Add or replace targets by Id; bad ones come back as failed entries, the rest apply."""
    rule = get_rule(session, bus_name, rule_name)
    existing = {t.target_id: t for t in rule.targets}
    new_ids = {t.get("Id") for t in targets} - set(existing)
    if len(existing) + len(new_ids) > MAX_TARGETS_PER_RULE:
        raise LimitExceeded("The requested resource exceeds the maximum number allowed.")
    failed: list[FailedTarget] = []
    for spec in targets:
        target_id = str(spec.get("Id") or "")
        problem = _target_problem(session, spec)
        if problem is not None:
            failed.append(FailedTarget(target_id, "ValidationException", problem))
            continue
        target = existing.get(target_id)
        if target is None:
            target = Target(target_id=target_id, position=len(rule.targets))
            rule.targets.append(target)
            existing[target_id] = target
        target.arn = spec["Arn"]
        target.spec = dict(spec)
    touch(session, rule.bus_name)
    session.flush()
    return failed


def _target_problem(session: Session, spec: dict[str, Any]) -> str | None:
    target_id = spec.get("Id")
    if not isinstance(target_id, str) or not TARGET_ID.match(target_id):
        return "Target Id must be 1-64 characters of [.-_A-Za-z0-9]."
    if not isinstance(spec.get("Arn"), str) or not spec["Arn"]:
        return "Target Arn is required."
    given = [k for k in ("Input", "InputPath", "InputTransformer") if spec.get(k) is not None]
    if len(given) > 1:
        return "Only one of Input, InputPath, or InputTransformer must be provided."
    if spec.get("Input") is not None:
        try:
            json.loads(spec["Input"])
        except (TypeError, ValueError):
            return "Input is not valid JSON text."
    return validate_target(session, spec)


def remove_targets(
    session: Session, bus_name: str | None, rule_name: str, ids: Sequence[str]
) -> list[FailedTarget]:
    rule = get_rule(session, bus_name, rule_name)
    by_id = {t.target_id: t for t in rule.targets}
    failed = []
    for target_id in ids:
        target = by_id.get(target_id)
        if target is None:
            failed.append(
                FailedTarget(target_id, "ResourceNotFoundException", "Target does not exist.")
            )
            continue
        rule.targets.remove(target)
    touch(session, rule.bus_name)
    return failed


def count_rules(session: Session, bus_name: str) -> int:
    return int(session.scalar(select(func.count()).where(Rule.bus_name == bus_name)) or 0)
