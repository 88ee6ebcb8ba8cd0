"""What the outside world sends into a running execution: task-token callbacks
(``SendTaskSuccess``/``SendTaskFailure``/``SendTaskHeartbeat``) and ``StopExecution``.

Each is one durable step (:func:`~app.workflows.engine.apply`). A token whose task is no longer
waiting — it finished, timed out, or its execution stopped — answers ``TaskTimedOut``, as on
AWS; a string that was never a token answers ``InvalidToken``. A token that no workflow task
holds may belong to another domain's holder (an asynchronous work-queue message), found through
the registry in :mod:`app.workflows.tokens`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.config import Settings
from app.db import get_database, utcnow
from app.workflows import errors, service
from app.workflows.asl import (
    Event,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSucceeded,
)
from app.workflows.engine import apply
from app.workflows.models import ExecutionTask
from app.workflows.store import ACTIVE
from app.workflows.tokens import TokenHolder, token_holders

MAX_ERROR = 256
MAX_CAUSE = 32768


def _task(settings: Settings, token: Any) -> tuple[int, str] | None:
    if not isinstance(token, str) or not token:
        raise errors.invalid_token()
    try:
        uuid.UUID(token)
    except ValueError:
        raise errors.invalid_token() from None
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.execute(
            select(ExecutionTask.execution_id, ExecutionTask.ref, ExecutionTask.status).where(
                ExecutionTask.task_token == token
            )
        ).first()
    if row is None:
        return None
    if row.status not in ACTIVE:
        raise errors.task_timed_out()
    return row.execution_id, row.ref


def _send(
    settings: Settings,
    token: Any,
    events: Callable[[str], list[Event]],
    close: bool,
    offer: Callable[[TokenHolder, str], bool],
) -> None:
    """Apply ``events`` to the workflow task that holds ``token``; if none does, ``offer`` gives
    the token to each registered holder until one holds it."""
    found = _task(settings, token)
    if found is None:
        if any(offer(holder, token) for holder in token_holders()):
            return
        raise errors.task_does_not_exist()
    execution_id, ref = found
    now = utcnow()
    step = apply(
        settings,
        execution_id,
        lambda _session, _loaded: ([(event, now) for event in events(ref)], []),
        rows={ref: "done"} if close else None,
    )
    if not step.applied:
        raise errors.task_timed_out()


def send_success(settings: Settings, token: Any, output: Any) -> None:
    if not isinstance(output, str):
        raise errors.invalid_output("The output must be a string of JSON")
    try:
        value = json.loads(output)
    except ValueError as exc:
        raise errors.invalid_output(str(exc)) from None
    _send(
        settings,
        token,
        lambda ref: [TaskStarted(ref), TaskSucceeded(ref, value)],
        True,
        lambda holder, t: holder.succeed(settings, t, value),
    )


def send_failure(settings: Settings, token: Any, error: Any, cause: Any) -> None:
    if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR):
        raise errors.validation("The error must be a string of at most 256 characters")
    if cause is not None and (not isinstance(cause, str) or len(cause) > MAX_CAUSE):
        raise errors.validation("The cause must be a string of at most 32768 characters")
    _send(
        settings,
        token,
        lambda ref: [TaskStarted(ref), TaskFailed(ref, error, cause)],
        True,
        lambda holder, t: holder.fail(settings, t, error, cause),
    )


def send_heartbeat(settings: Settings, token: Any) -> None:
    _send(
        settings,
        token,
        lambda ref: [TaskHeartbeat(ref)],
        False,
        lambda holder, t: holder.heartbeat(settings, t),
    )


def stop(settings: Settings, arn: Any, error: Any, cause: Any) -> datetime:
    """StopExecution: ``ABORTED`` now; its tasks are cancelled. Returns the stop date."""
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        view = service.get_execution(session, arn)
        execution_id = view.execution.id
        stopped = view.execution.stop_date
    if stopped is not None:
        return stopped
    apply(
        settings,
        execution_id,
        lambda _session, _loaded: ([(Stop(error, cause), utcnow())], []),
    )
    with database.session() as session:
        stopped = service.get_execution(session, arn).execution.stop_date
    return stopped or utcnow()
