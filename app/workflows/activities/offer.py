"""What a step does with the activity tasks it schedules: in the step's own transaction, each
becomes available to pollers (an ``activity_tasks`` row) and its ``execution_tasks`` row moves
to ``waiting`` — like a ``.waitForTaskToken`` task whose message is out — so no smokehouse
worker runs it and the sweeper does not send it again; once the step commits, the activity's
long polls are woken. An activity that does not exist fails the task with ``States.Runtime``
(as AWS fails the execution), in a step of its own after this one committed.

The dispatcher calls :func:`offer` before it sends the step's other tasks to the broker, so this
module must not import the engine (which imports the dispatcher).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import after_commit
from app.workflows.activities import wake
from app.workflows.activities.arns import is_activity
from app.workflows.activities.models import Activity, ActivityTask
from app.workflows.asl import ScheduleTask
from app.workflows.models import ExecutionTask
from app.workflows.store import dump

TASKS = cast(Table, ExecutionTask.__table__)
OFFERED = cast(Table, ActivityTask.__table__)

_WAITING = (
    TASKS.update()
    .where(
        TASKS.c.execution_id == bindparam("p_id"),
        TASKS.c.ref == bindparam("p_ref"),
        TASKS.c.status == "scheduled",
    )
    .values(status="waiting", claimed_until=None)
)


def offer(
    session: Session,
    settings: Settings,
    execution_id: int,
    tasks: Sequence[ScheduleTask],
    now: datetime,
) -> list[ScheduleTask]:
    """Make the step's activity tasks available to pollers; return the tasks that still go to
    the broker (every other kind)."""
    mine = [t for t in tasks if is_activity(t.resource) and t.task_token is not None]
    if not mine:
        return list(tasks)
    others = [t for t in tasks if not (is_activity(t.resource) and t.task_token is not None)]
    wanted = {t.resource for t in mine}
    known = set(session.scalars(select(Activity.arn).where(Activity.arn.in_(wanted))))
    available = [t for t in mine if t.resource in known]
    connection = session.connection()
    if available:
        connection.execute(
            OFFERED.insert(),
            [
                {
                    "task_token": t.task_token,
                    "activity_arn": t.resource,
                    "execution_id": execution_id,
                    "ref": t.ref,
                    "input": dump(t.parameters),
                    "scheduled_at": now,
                    "claim": None,
                    "claimed_until": None,
                }
                for t in available
            ],
        )
        connection.execute(_WAITING, [{"p_id": execution_id, "p_ref": t.ref} for t in available])
        after_commit(session).call(wake.notify, settings, [t.resource for t in available])
    for task in mine:
        if task.resource not in known:
            after_commit(session).call(_fail_missing, settings, execution_id, task)
    return others


def _fail_missing(settings: Settings, execution_id: int, task: ScheduleTask) -> None:
    """After the commit: the activity does not exist (AWS: ``States.Runtime``). If this process
    dies first, the row is still ``scheduled``: the sweeper sends it to a worker, whose
    :class:`~app.workflows.activities.resource.ActivityResource` fails it the same way."""
    from app.workflows.activities.service import fail_missing  # the engine imports this module

    fail_missing(settings, execution_id, task.ref, task.resource)
