"""The activity Task resource, for the task a smokehouse worker picks up itself.

Normally no worker runs an activity task: the step that schedules it makes it available to
pollers (:mod:`~app.workflows.activities.offer`). A worker gets one only when the engine runs
the first task of a step inline, or when the sweeper resends a task whose activity did not
exist and whose failure was not recorded. Then this resource, inside the step's transaction,
makes the task available to pollers (its row then waits for the token, as a
``.waitForTaskToken`` task's does) or fails it with ``States.Runtime`` when the activity does
not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.db import after_commit, dialect_insert, utcnow
from app.workflows.activities import wake
from app.workflows.activities.arns import is_activity
from app.workflows.activities.models import Activity, ActivityTask
from app.workflows.activities.service import execution_id_of, missing_cause
from app.workflows.asl import TaskError
from app.workflows.resources import TaskCall
from app.workflows.store import dump
from app.workflows.store import load as load_execution

SUPPORTED = "arn:aws:states:<region>:<account>:activity:<name>"


class ActivityResource:
    kind = "activity"
    transactional = True

    def accepts(self, base: str) -> bool:
        return is_activity(base)

    def problem(self, base: str) -> str | None:
        """None: whether the activity exists is checked when a task is scheduled (AWS accepts
        a definition naming an activity not created yet)."""
        return None

    def run(self, call: TaskCall) -> Any:
        session = call.session
        assert session is not None, "an activity task is offered inside the step's transaction"
        if ":express:" in call.execution_arn:
            raise TaskError("States.Runtime", "Express state machines do not support activities")
        execution_id = execution_id_of(session, call.execution_arn)
        if execution_id is None or call.token is None:
            raise TaskError("States.Runtime", f"The activity task {call.ref} has no token")
        if session.get(Activity, call.base) is None:
            loaded = load_execution(session, execution_id)
            cause = None if loaded is None else missing_cause(loaded, call.ref, call.base)
            raise TaskError("States.Runtime", cause or f"The activity {call.base} does not exist.")
        taken = session.scalar(
            select(ActivityTask.task_token).where(ActivityTask.task_token == call.token)
        )
        if taken is None:
            insert = dialect_insert(session.connection())(ActivityTask).values(
                task_token=call.token,
                activity_arn=call.base,
                execution_id=execution_id,
                ref=call.ref,
                input=dump(call.parameters),
                scheduled_at=utcnow(),
            )
            session.execute(insert.on_conflict_do_nothing(index_elements=["task_token"]))
            after_commit(session).call(wake.notify, call.settings, [call.base])
        return None
