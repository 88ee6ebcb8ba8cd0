"""EventBridge Scheduler's schedules and schedule groups: create, read, update, delete, tags.

Services don't commit (the request boundary does). Errors are :class:`AwsError` with the codes
the Scheduler model declares (the REST router gives each its HTTP status).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.aws.errors import AwsError
from app.bus.targets import adapter_for
from app.common.schedule_expressions import InvalidExpression, next_fire, parse
from app.db import utcnow
from app.schedules.models import Schedule, ScheduleGroup

DEFAULT_GROUP = "default"
STATES = ("ENABLED", "DISABLED")


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 404)


def conflict(message: str) -> AwsError:
    return AwsError("ConflictException", message, 409)


def invalid(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def group_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{account}:schedule-group/{name}"


def schedule_arn(region: str, account: str, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{account}:schedule/{group}/{name}"


# --- groups ---------------------------------------------------------------------------------


def get_group(session: Session, name: str | None) -> ScheduleGroup:
    name = name or DEFAULT_GROUP
    group = session.get(ScheduleGroup, name)
    if group is None and name == DEFAULT_GROUP:  # the default group always exists
        group = ScheduleGroup(name=DEFAULT_GROUP, tags={})
        session.add(group)
        session.flush()
    if group is None:
        raise not_found(f"Schedule group {name} does not exist.")
    return group


def create_group(
    session: Session,
    name: str,
    tags: list[dict[str, str]] | None,
    client_token: str | None = None,
) -> ScheduleGroup:
    """Create a group; the resend of a create (the same ``ClientToken``) finds it."""
    found = session.get(ScheduleGroup, name)
    if found is not None and client_token and found.client_token == client_token:
        return found
    if name == DEFAULT_GROUP or found is not None:
        raise conflict(f"Schedule group {name} already exists.")
    group = ScheduleGroup(
        name=name, tags={t["Key"]: t["Value"] for t in tags or []}, client_token=client_token
    )
    session.add(group)
    session.flush()
    return group


def delete_group(session: Session, name: str) -> None:
    if name == DEFAULT_GROUP:
        raise invalid("The default schedule group cannot be deleted.")
    group = get_group(session, name)
    session.execute(delete(Schedule).where(Schedule.group_name == name))
    session.delete(group)


def list_groups(session: Session, prefix: str | None) -> list[ScheduleGroup]:
    get_group(session, DEFAULT_GROUP)
    statement = select(ScheduleGroup).order_by(ScheduleGroup.name)
    if prefix:
        statement = statement.where(ScheduleGroup.name.startswith(prefix, autoescape=True))
    return list(session.scalars(statement))


def group_from_arn(session: Session, arn: str) -> ScheduleGroup:
    marker = ":schedule-group/"
    if not arn.startswith("arn:aws:scheduler:") or marker not in arn:
        raise invalid(f"Invalid ResourceArn {arn}.")
    return get_group(session, arn.split(marker, 1)[1])


# --- schedules ------------------------------------------------------------------------------


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"Invalid time zone: {name}.") from None


def _check(params: dict[str, Any]) -> None:
    try:
        parse(params["ScheduleExpression"], allow_at=True)
    except InvalidExpression:
        raise invalid(f"Invalid Schedule Expression {params['ScheduleExpression']}.") from None
    _zone(params.get("ScheduleExpressionTimezone"))
    window = params["FlexibleTimeWindow"]
    if window["Mode"] == "FLEXIBLE" and not window.get("MaximumWindowInMinutes"):
        raise invalid("MaximumWindowInMinutes is required when Mode is FLEXIBLE.")
    if window["Mode"] == "OFF" and window.get("MaximumWindowInMinutes") is not None:
        raise invalid("MaximumWindowInMinutes must not be set when Mode is OFF.")
    start, end = params.get("StartDate"), params.get("EndDate")
    if start is not None and end is not None and _instant(end) <= _instant(start):
        raise invalid("The EndDate must be after the StartDate.")
    target = params["Target"]
    if adapter_for(target["Arn"]) is None:
        raise invalid(f"Target ARN {target['Arn']} is not a supported target.")
    dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
    if dead_letter is not None and not dead_letter.startswith("arn:aws:sqs:"):
        raise invalid("DeadLetterConfig Arn must be an SQS queue ARN.")


def _instant(value: Any) -> datetime:
    """A timestamp member as botocore sends it (epoch seconds) or an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def first_fire(schedule: Schedule, after: datetime, rng: random.Random | None = None) -> None:
    """Set ``next_fire_at``: the first due time strictly after ``after`` within Start/EndDate
    (plus a random offset within a flexible window); ``None`` when none is left or disabled."""
    schedule.next_fire_at = None
    if schedule.state != "ENABLED":
        return
    due = due_after(schedule, after)
    if due is None:
        return
    window = schedule.flexible_window or {}
    if window.get("Mode") == "FLEXIBLE":
        minutes = int(window.get("MaximumWindowInMinutes") or 0)
        due += timedelta(seconds=(rng or random.Random()).uniform(0, minutes * 60))
    schedule.next_fire_at = due


def due_after(schedule: Schedule, after: datetime) -> datetime | None:
    expression = parse(schedule.expression, allow_at=True)
    zone = _zone(schedule.timezone)
    start = schedule.start_date
    if start is not None and after < start:
        after = start - timedelta(microseconds=1)
    due = next_fire(expression, after, anchor=start or schedule.created_at, zone=zone)
    if due is not None and schedule.end_date is not None and due > schedule.end_date:
        return None
    return due


def _apply(schedule: Schedule, params: dict[str, Any], region: str) -> None:
    schedule.expression = params["ScheduleExpression"]
    schedule.timezone = params.get("ScheduleExpressionTimezone") or "UTC"
    start, end = params.get("StartDate"), params.get("EndDate")
    schedule.start_date = _instant(start) if start is not None else None
    schedule.end_date = _instant(end) if end is not None else None
    schedule.description = params.get("Description")
    schedule.state = params.get("State") or "ENABLED"
    schedule.flexible_window = dict(params["FlexibleTimeWindow"])
    schedule.action_after_completion = params.get("ActionAfterCompletion") or "NONE"
    schedule.target = dict(params["Target"])
    schedule.kms_key_arn = params.get("KmsKeyArn")
    schedule.region = region


def create_schedule(
    session: Session, params: dict[str, Any], region: str, now: datetime | None = None
) -> Schedule:
    """Create a schedule; the resend of a create (the same ``ClientToken``) finds it."""
    _check(params)
    group = get_group(session, params.get("GroupName"))
    token = params.get("ClientToken")
    found = session.scalar(
        select(Schedule).where(Schedule.group_name == group.name, Schedule.name == params["Name"])
    )
    if found is not None and token and found.client_token == token:
        return found
    if found is not None:
        raise conflict(f"Schedule {params['Name']} already exists.")
    now = now or utcnow()
    schedule = Schedule(
        id=str(uuid.uuid4()), group_name=group.name, name=params["Name"], client_token=token
    )
    schedule.created_at = now
    _apply(schedule, params, region)
    first_fire(schedule, now)
    session.add(schedule)
    session.flush()
    return schedule


def get_schedule(session: Session, group: str | None, name: str) -> Schedule:
    group_name = get_group(session, group).name
    schedule = session.scalar(
        select(Schedule).where(Schedule.group_name == group_name, Schedule.name == name)
    )
    if schedule is None:
        raise not_found(f"Schedule {name} does not exist.")
    return schedule


def update_schedule(
    session: Session, params: dict[str, Any], region: str, now: datetime | None = None
) -> Schedule:
    _check(params)
    schedule = get_schedule(session, params.get("GroupName"), params["Name"])
    _apply(schedule, params, region)
    first_fire(schedule, now or utcnow())
    session.flush()
    return schedule


def delete_schedule(session: Session, group: str | None, name: str) -> None:
    session.delete(get_schedule(session, group, name))


def list_schedules(
    session: Session, group: str | None, prefix: str | None, state: str | None
) -> list[Schedule]:
    statement = select(Schedule).order_by(Schedule.group_name, Schedule.name)
    if group:
        statement = statement.where(Schedule.group_name == get_group(session, group).name)
    if prefix:
        statement = statement.where(Schedule.name.startswith(prefix, autoescape=True))
    if state:
        statement = statement.where(Schedule.state == state)
    return list(session.scalars(statement))
