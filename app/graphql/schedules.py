"""``schedules``: EventBridge Scheduler schedules with their next fire -- read-only here; they
are made and changed through ``boto3.client("scheduler")``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.orm import Session
from strawberry.types import Info

from app.graphql.context import Context, IsAuthenticated, in_session
from app.schedules.models import Schedule as ScheduleRow
from app.schedules.service import schedule_arn

MAX_LIMIT = 500


@strawberry.type
class Schedule:
    name: str
    group: str
    arn: str
    expression: str
    timezone: str
    state: str
    next_fire_at: datetime | None = strawberry.field(
        description="The next fire (within its flexible window); null when none is left."
    )
    target_arn: str
    action_after_completion: str
    start_date: datetime | None
    end_date: datetime | None
    description: str | None
    created_at: datetime


def _schedule(row: ScheduleRow, account: str) -> Schedule:
    return Schedule(
        name=row.name,
        group=row.group_name,
        arn=schedule_arn(row.region, account, row.group_name, row.name),
        expression=row.expression,
        timezone=row.timezone,
        state=row.state,
        next_fire_at=row.next_fire_at,
        target_arn=str(row.target.get("Arn", "")),
        action_after_completion=row.action_after_completion,
        start_date=row.start_date,
        end_date=row.end_date,
        description=row.description,
        created_at=row.created_at,
    )


async def resolve_schedules(
    info: Info[Context, Any], group: str | None = None, limit: int = 100
) -> list[Schedule]:
    """Schedules (of one group, or all), soonest next fire first."""
    settings = info.context.settings

    def work(session: Session) -> list[Schedule]:
        query = select(ScheduleRow)
        if group is not None:
            query = query.where(ScheduleRow.group_name == group)
        query = query.order_by(
            ScheduleRow.next_fire_at.is_(None), ScheduleRow.next_fire_at, ScheduleRow.name
        )
        rows = session.scalars(query.limit(max(1, min(limit, MAX_LIMIT))))
        return [_schedule(r, settings.account_id) for r in rows]

    return await in_session(settings, work)


@strawberry.type
class SchedulesQuery:
    schedules: list[Schedule] = strawberry.field(
        resolver=resolve_schedules, permission_classes=[IsAuthenticated]
    )
