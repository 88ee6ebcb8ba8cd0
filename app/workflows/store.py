"""Rows in, rows out: how one interpreter step is written, in the caller's transaction.

A step is three kinds of write, all in one transaction:

1. the execution row — a compare-and-set UPDATE on ``version`` (:class:`Conflict` when another
   step got there first: the caller rolls back, reloads and re-applies its event, which the
   interpreter then either applies to the new state or ignores as a duplicate);
2. the history events, appended;
3. the task/timer rows the commands call for (net of commands that cancel each other out within
   the same step), and the rows of the refs the step consumed.

This is the hot path of every Standard execution, so it speaks Core to the tables with
statements built once (binding parameters per call) on the session's connection: no ORM unit of
work, no statement compilation per step, one round trip per statement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, text
from sqlalchemy.orm import Session

from app.db import dialect_insert, insert_together
from app.secrets.redact import redact, redact_json
from app.workflows.asl import (
    Advance,
    CancelTask,
    CancelTimer,
    Command,
    ExecutionState,
    HistoryEvent,
    ScheduleTask,
    StartTimer,
)
from app.workflows.asl.interpreter import is_activity
from app.workflows.asl.model import parse_iso
from app.workflows.models import Execution, ExecutionEvent, ExecutionTask

ACTIVE = ("scheduled", "running", "waiting")
#: Timers due within this many seconds are sent to the broker with a countdown right away;
#: later ones wait in the table for the sweeper (no broker holds a message for hours).
COUNTDOWN_LIMIT = 60.0


EXECUTIONS = cast(Table, Execution.__table__)
EVENTS = cast(Table, ExecutionEvent.__table__)
TASKS = cast(Table, ExecutionTask.__table__)

_LOAD = select(
    EXECUTIONS.c.definition_hash, EXECUTIONS.c.version, EXECUTIONS.c.state, EXECUTIONS.c.status
).where(EXECUTIONS.c.id == bindparam("p_id"))
_CAS = EXECUTIONS.update().where(
    EXECUTIONS.c.id == bindparam("p_id"), EXECUTIONS.c.version == bindparam("p_version")
)
_STEP = _CAS.values(
    version=bindparam("p_next"), state=bindparam("p_state"), status=bindparam("p_status")
)
_FINISH = _STEP.values(
    stop_date=bindparam("p_stop"),
    output=bindparam("p_output"),
    error=bindparam("p_error"),
    cause=bindparam("p_cause"),
)
_ROW = and_(TASKS.c.execution_id == bindparam("p_id"), TASKS.c.ref == bindparam("p_ref"))
_DONE = (
    TASKS.update()
    .where(_ROW, TASKS.c.status.in_(ACTIVE))
    .values(status="done", claimed_until=None, finished_at=bindparam("p_finished"))
)
_WAITING = (
    TASKS.update()
    .where(_ROW, TASKS.c.status == "running")
    .values(status="waiting", claimed_until=None)
)
_CANCEL = (
    TASKS.update()
    .where(
        TASKS.c.execution_id == bindparam("p_id"),
        TASKS.c.ref.in_(bindparam("p_refs", expanding=True)),
        TASKS.c.status.in_(ACTIVE),
    )
    .values(status="cancelled", finished_at=bindparam("p_finished"))
)
_CLAIM = (
    TASKS.update()
    .where(
        _ROW,
        TASKS.c.kind == "task",
        or_(
            TASKS.c.status == "scheduled",
            and_(TASKS.c.status == "running", TASKS.c.claimed_until < bindparam("p_now")),
        ),
    )
    .values(status="running", attempts=TASKS.c.attempts + 1, claimed_until=bindparam("p_until"))
    .returning(
        TASKS.c.resource,
        TASKS.c.state_name,
        TASKS.c.parameters,
        TASKS.c.task_token,
        TASKS.c.timeout_seconds,
        TASKS.c.attempts,
        TASKS.c.heartbeat_seconds,
    )
)


class Conflict(Exception):
    """The execution moved on since it was read: this step must be re-applied."""


def _slots(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def dump_state(state: ExecutionState) -> str:
    """``state.to_json()``, twice as fast: the C encoder walks the slotted dataclasses."""
    return json.dumps(state, default=_slots, separators=(",", ":"), ensure_ascii=False)


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def shown(value: Any) -> str:
    """:func:`dump` for what callers read (history, outputs): known secrets masked."""
    return redact_json(value, dump)


def shown_text(text: str | None) -> str | None:
    return None if text is None else redact(text)


@dataclass(slots=True)
class Loaded:
    """An execution as a step needs it."""

    id: int
    definition_hash: str
    version: int
    state: ExecutionState
    status: str

    @property
    def arn(self) -> str:
        return self.state.execution.id

    @property
    def state_machine_arn(self) -> str:
        return self.state.execution.state_machine_id


def load(session: Session, execution_id: int) -> Loaded | None:
    row = session.connection().execute(_LOAD, {"p_id": execution_id}).first()
    if row is None:
        return None
    return Loaded(execution_id, row[0], row[1], ExecutionState.from_json(row[2]), row[3])


_INSERTS: dict[str, Any] = {}


def insert_execution(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a new execution; None when its name is taken (no exception, no aborted
    transaction: the caller then applies StartExecution's idempotency rule)."""
    connection = session.connection()
    dialect = connection.dialect.name
    statement = _INSERTS.get(dialect)
    if statement is None:
        statement = _INSERTS[dialect] = (
            dialect_insert(connection)(EXECUTIONS)
            .on_conflict_do_nothing(index_elements=["state_machine_id", "name"])
            .returning(EXECUTIONS.c.id)
        )
    found: int | None = connection.execute(statement, values).scalar()
    return found


def execution_values(adv: Advance, now: datetime) -> dict[str, Any]:
    st = adv.state
    values: dict[str, Any] = {"state": dump_state(st), "status": st.status}
    if st.finished:
        values["stop_date"] = now
        values["output"] = shown(st.output) if st.status == "SUCCEEDED" else None
        values["error"] = st.error
        values["cause"] = shown_text(st.cause)
    return values


def update_execution(session: Session, loaded: Loaded, adv: Advance, now: datetime) -> int:
    """Compare-and-set the execution row; return the new version or raise :class:`Conflict`."""
    st = adv.state
    params: dict[str, Any] = {
        "p_id": loaded.id,
        "p_version": loaded.version,
        "p_next": loaded.version + 1,
        "p_state": dump_state(st),
        "p_status": st.status,
    }
    statement = _STEP
    if st.finished:
        statement = _FINISH
        params.update(
            p_stop=now,
            p_output=shown(st.output) if st.status == "SUCCEEDED" else None,
            p_error=st.error,
            p_cause=shown_text(st.cause),
        )
    result = session.connection().execute(statement, params)
    if result.rowcount != 1:
        raise Conflict(loaded.id)
    return loaded.version + 1


@dataclass(slots=True)
class Written:
    """What a step left to do once its transaction has committed."""

    tasks: list[ScheduleTask] = field(default_factory=list)  # to enqueue
    timers: list[StartTimer] = field(default_factory=list)  # to enqueue when due soon
    inline: ScheduleTask | None = None  # claimed for the calling process to run itself
    deliveries: list[str] = field(default_factory=list)  # bus deliveries (status events)


def _net(commands: Sequence[Command]) -> tuple[dict[str, Command], list[str]]:
    """New tasks/timers, and refs to cancel — a ref started and cancelled in one step never
    reaches the table."""
    new: dict[str, Command] = {}
    cancel: list[str] = []
    for command in commands:
        if isinstance(command, ScheduleTask | StartTimer):
            new[command.ref] = command
        elif isinstance(command, CancelTask | CancelTimer) and new.pop(command.ref, None) is None:
            cancel.append(command.ref)
    return new, cancel


def first_new_task(commands: Sequence[Command]) -> ScheduleTask | None:
    """The task a step would run inline: its first new one (what :func:`append` claims). Never
    an activity's: an outside worker takes that one, and records its start when it does."""
    new, _ = _net(commands)
    return next(
        (c for c in new.values() if isinstance(c, ScheduleTask) and not is_activity(c.resource)),
        None,
    )


def _history_rows(execution_id: int, history: Sequence[HistoryEvent], region: str) -> list[Any]:
    rows = []
    for event in history:
        details = event.details
        if event.type == "TaskScheduled" and details is not None:
            details = {**details, "region": region}  # AWS records the task's region
        rows.append(
            {
                "execution_id": execution_id,
                "event_id": event.id,
                "previous_event_id": event.previous_event_id,
                "type": event.type,
                "timestamp": parse_iso(event.timestamp),
                "details": None
                if event.details_key is None
                else shown({event.details_key: details}),
            }
        )
    return rows


@dataclass(slots=True)
class _Plan:
    """The rows one step writes besides the execution's."""

    history: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    cancel: list[str]
    rows: dict[str, str]
    written: Written


def _plan(
    execution_id: int,
    adv: Advance,
    now: datetime,
    region: str,
    rows: Mapping[str, str] | None,
    inline_ref: str | None,
    lease_seconds: float,
) -> _Plan:
    new, cancel = _net(adv.commands)
    written = Written()
    task_rows: list[dict[str, Any]] = []
    for ref, command in new.items():
        row: dict[str, Any] = {
            "execution_id": execution_id,
            "ref": ref,
            "attempts": 0,
            "claimed_until": None,
            "enqueued_at": now,
            "resource": None,
            "state_name": None,
            "parameters": None,
            "timeout_seconds": None,
            "heartbeat_seconds": None,
            "task_token": None,
            "status": "scheduled",
        }
        if isinstance(command, ScheduleTask):
            row.update(
                kind="task",
                purpose="task",
                due_at=now,
                resource=command.resource,
                state_name=command.state_name,
                parameters=dump(command.parameters),
                timeout_seconds=command.timeout_seconds,
                heartbeat_seconds=command.heartbeat_seconds,
                task_token=command.task_token,
            )
            if ref == inline_ref:
                written.inline = command
                row.update(
                    status="running",
                    attempts=1,
                    enqueued_at=None,
                    claimed_until=now + timedelta(seconds=lease_seconds),
                )
            else:
                written.tasks.append(command)
        else:
            assert isinstance(command, StartTimer)
            due = command.fire_at_datetime
            soon = (due - now).total_seconds() <= COUNTDOWN_LIMIT
            row.update(kind="timer", purpose=command.purpose, due_at=due)
            row["enqueued_at"] = now if soon else None
            if soon:
                written.timers.append(command)
        task_rows.append(row)
    history = _history_rows(execution_id, adv.history, region)
    return _Plan(history, task_rows, cancel, dict(rows or {}), written)


def _write_plan(session: Session, execution_id: int, plan: _Plan, now: datetime) -> None:
    connection = session.connection()
    insert_together(connection, [(EVENTS, plan.history), (TASKS, plan.tasks)])
    if plan.cancel:
        connection.execute(
            _CANCEL, {"p_id": execution_id, "p_refs": plan.cancel, "p_finished": now}
        )
    for ref, status in plan.rows.items():
        set_row(session, execution_id, ref, status, now)


def append(
    session: Session,
    execution_id: int,
    adv: Advance,
    now: datetime,
    *,
    region: str,
    rows: Mapping[str, str] | None = None,
    inline_ref: str | None = None,
    lease_seconds: float = 60.0,
) -> Written:
    """History, task/timer rows and the consumed refs' rows (``rows``: ref → new status) of a
    new execution's first step."""
    plan = _plan(execution_id, adv, now, region, rows, inline_ref, lease_seconds)
    _write_plan(session, execution_id, plan, now)
    return plan.written


def write_step(
    session: Session,
    loaded: Loaded,
    adv: Advance,
    now: datetime,
    *,
    region: str,
    rows: Mapping[str, str] | None = None,
    inline_ref: str | None = None,
    lease_seconds: float = 60.0,
) -> tuple[int, Written]:
    """A step of a running execution: the compare-and-set and every row it writes. On
    PostgreSQL that is ONE statement (:data:`_FUSED`): one round trip, and the rows are only
    written if the compare-and-set matched. Raises :class:`Conflict`."""
    plan = _plan(loaded.id, adv, now, region, rows, inline_ref, lease_seconds)
    if session.get_bind().dialect.name != "postgresql":
        version = update_execution(session, loaded, adv, now)
        _write_plan(session, loaded.id, plan, now)
        return version, plan.written
    st = adv.state
    finished = st.finished
    by_status: dict[str, list[str]] = {"done": [], "waiting": []}
    for ref, status in plan.rows.items():
        by_status[status].append(ref)
    matched = session.execute(
        _FUSED,
        {
            "p_id": loaded.id,
            "p_version": loaded.version,
            "p_next": loaded.version + 1,
            "p_state": dump_state(st),
            "p_status": st.status,
            "p_stop": now if finished else None,
            "p_output": shown(st.output) if st.status == "SUCCEEDED" else None,
            "p_error": st.error if finished else None,
            "p_cause": shown_text(st.cause) if finished else None,
            "p_events": json.dumps(plan.history, default=_iso),
            "p_tasks": json.dumps(plan.tasks, default=_iso),
            "p_cancel": plan.cancel,
            "p_done": by_status["done"],
            "p_waiting": by_status["waiting"],
            "p_now": now,
        },
    ).scalar()
    if not matched:
        raise Conflict(loaded.id)
    return loaded.version + 1, plan.written


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


#: PostgreSQL: a step in one statement. Every data-modifying CTE joins ``cas``, so nothing is
#: written unless the compare-and-set matched; the statement returns whether it did.
_FUSED = text(
    """
WITH cas AS (
    UPDATE executions
    SET version = :p_next, state = :p_state, status = :p_status,
        stop_date = :p_stop, output = :p_output, error = :p_error, cause = :p_cause
    WHERE id = :p_id AND version = :p_version
    RETURNING id
), history AS (
    INSERT INTO execution_events
        (execution_id, event_id, previous_event_id, type, timestamp, details)
    SELECT cas.id, e.event_id, e.previous_event_id, e.type, e.timestamp, e.details
    FROM cas, json_to_recordset(CAST(:p_events AS json)) AS e(
        event_id int, previous_event_id int, type text, timestamp timestamptz, details text)
), tasks AS (
    INSERT INTO execution_tasks
        (execution_id, ref, kind, purpose, status, due_at, resource, state_name, parameters,
         timeout_seconds, heartbeat_seconds, task_token, attempts, claimed_until, enqueued_at)
    SELECT cas.id, t.ref, t.kind, t.purpose, t.status, t.due_at, t.resource, t.state_name,
        t.parameters, t.timeout_seconds, t.heartbeat_seconds, t.task_token, t.attempts,
        t.claimed_until, t.enqueued_at
    FROM cas, json_to_recordset(CAST(:p_tasks AS json)) AS t(
        ref text, kind text, purpose text, status text, due_at timestamptz, resource text,
        state_name text, parameters text, timeout_seconds int, heartbeat_seconds int,
        task_token text, attempts int, claimed_until timestamptz, enqueued_at timestamptz)
), cancelled AS (
    UPDATE execution_tasks SET status = 'cancelled', finished_at = :p_now
    FROM cas
    WHERE execution_tasks.execution_id = cas.id AND execution_tasks.ref = ANY(:p_cancel)
        AND execution_tasks.status IN ('scheduled', 'running', 'waiting')
), done AS (
    UPDATE execution_tasks SET status = 'done', claimed_until = NULL, finished_at = :p_now
    FROM cas
    WHERE execution_tasks.execution_id = cas.id AND execution_tasks.ref = ANY(:p_done)
        AND execution_tasks.status IN ('scheduled', 'running', 'waiting')
), waiting AS (
    UPDATE execution_tasks SET status = 'waiting', claimed_until = NULL
    FROM cas
    WHERE execution_tasks.execution_id = cas.id AND execution_tasks.ref = ANY(:p_waiting)
        AND execution_tasks.status = 'running'
)
SELECT count(*) FROM cas
"""
)


_OVERDUE = (
    select(TASKS.c.ref, TASKS.c.due_at)
    .where(
        TASKS.c.execution_id == bindparam("p_id"),
        TASKS.c.kind == "timer",
        TASKS.c.status == "scheduled",
        TASKS.c.due_at <= bindparam("p_now"),
    )
    .order_by(TASKS.c.due_at)
)


def overdue_timers(
    session: Session, execution_id: int, now: datetime
) -> list[tuple[str, datetime]]:
    """The execution's timers due by ``now`` and not fired yet, earliest first."""
    rows = session.connection().execute(_OVERDUE, {"p_id": execution_id, "p_now": now})
    return [(row[0], row[1]) for row in rows]


def set_row(session: Session, execution_id: int, ref: str, status: str, now: datetime) -> None:
    """Move a task/timer row on: ``waiting`` only from ``running``; ``done`` from any active."""
    statement = _WAITING if status == "waiting" else _DONE
    session.connection().execute(statement, {"p_id": execution_id, "p_ref": ref, "p_finished": now})


# --- nested executions (``states:startExecution``) ------------------------------------------

_PARENT_OF = select(EXECUTIONS.c.parent_id, EXECUTIONS.c.parent_ref).where(
    EXECUTIONS.c.id == bindparam("p_child"), EXECUTIONS.c.parent_wait.is_not(None)
)
_WAKE = (
    TASKS.update()
    .where(_ROW, TASKS.c.status == "waiting")
    .values(status="scheduled", claimed_until=None, enqueued_at=bindparam("p_now"))
)


def wake_parent(session: Session, child_id: int, now: datetime) -> tuple[int, str] | None:
    """In the final transaction of an execution a ``.sync`` task waits on: put that task back to
    ``scheduled`` so that it runs again, reads this execution's outcome and reports it. The row
    is the outbox: the caller sends the task after the commit, and if that message is lost (a
    worker killed in between) the sweeper sends the scheduled task again. Returns the parent's
    ``(execution_id, ref)`` when there is one still waiting."""
    connection = session.connection()
    row = connection.execute(_PARENT_OF, {"p_child": child_id}).first()
    if row is None or row[0] is None:
        return None
    woken = connection.execute(_WAKE, {"p_id": row[0], "p_ref": row[1], "p_now": now})
    return (row[0], row[1]) if woken.rowcount == 1 else None


def execution_id_of(session: Session, arn: str) -> int | None:
    found: int | None = session.scalar(select(EXECUTIONS.c.id).where(EXECUTIONS.c.arn == arn))
    return found


def child_of(session: Session, parent_id: int, ref: str) -> int | None:
    """The execution a parent's task attempt started, if it did (at most one per ref)."""
    found: int | None = session.scalar(
        select(EXECUTIONS.c.id)
        .where(EXECUTIONS.c.parent_id == parent_id, EXECUTIONS.c.parent_ref == ref)
        .limit(1)
    )
    return found


def link_child(session: Session, child_id: int, parent_id: int, ref: str, wait: str | None) -> bool:
    """Adopt an execution StartExecution's idempotency answered with (same name, same input,
    still running) unless another task already did; whether it is now this task's child."""
    result = session.execute(
        EXECUTIONS.update()
        .where(EXECUTIONS.c.id == child_id, EXECUTIONS.c.parent_id.is_(None))
        .values(parent_id=parent_id, parent_ref=ref, parent_wait=wait)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def running_children(session: Session, parent_id: int, refs: Sequence[str]) -> list[int]:
    """The running executions that these (cancelled) ``.sync`` tasks of a parent wait on."""
    rows = session.execute(
        select(EXECUTIONS.c.id).where(
            EXECUTIONS.c.parent_id == parent_id,
            EXECUTIONS.c.parent_ref.in_(list(refs)),
            EXECUTIONS.c.parent_wait.is_not(None),
            EXECUTIONS.c.status == "RUNNING",
        )
    )
    return [row[0] for row in rows]


@dataclass(slots=True)
class Claim:
    """A task a worker has claimed: everything it needs to run the resource."""

    execution_id: int
    ref: str
    resource: str
    state_name: str
    parameters: Any
    token: str | None
    timeout_seconds: int | None
    attempt: int
    claimed_at: datetime
    execution_arn: str
    state_machine_arn: str
    cached: Loaded | None = None  # the execution as last read or written, if known
    started: bool = False  # TaskStarted is already in the history
    heartbeat_seconds: int | None = None

    @property
    def observable_start(self) -> bool:
        """Whether TaskStarted must be recorded before the task runs: a timeout or heartbeat
        timer may fire first, or a callback may answer first. Otherwise it is recorded with the
        result (stamped with the claim time) — the same history, one transaction fewer."""
        return bool(self.timeout_seconds or self.heartbeat_seconds or self.token)


def claim_task(
    session: Session, loaded: Loaded, ref: str, now: datetime, lease_seconds: float
) -> Claim | None:
    """Take a scheduled task, or one whose previous claimant's lease lapsed (it died) — if the
    execution still waits on it."""
    if ref not in loaded.state.pending:
        return None
    row = (
        session.connection()
        .execute(
            _CLAIM,
            {
                "p_id": loaded.id,
                "p_ref": ref,
                "p_now": now,
                "p_until": now + timedelta(seconds=lease_seconds),
            },
        )
        .first()
    )
    if row is None:
        return None
    return Claim(
        loaded.id,
        ref,
        row[0] or "",
        row[1] or "",
        json.loads(row[2]) if row[2] is not None else None,
        row[3],
        row[4],
        row[5],
        now,
        loaded.arn,
        loaded.state_machine_arn,
        loaded,
        heartbeat_seconds=row[6],
    )


def inline_claim(after: Loaded, task: ScheduleTask, now: datetime) -> Claim:
    """The claim for a task :func:`append` inserted already claimed for this process."""
    return Claim(
        after.id,
        task.ref,
        task.resource,
        task.state_name,
        task.parameters,
        task.task_token,
        task.timeout_seconds,
        1,
        now,
        after.arn,
        after.state_machine_arn,
        after,
        started=True,
        heartbeat_seconds=task.heartbeat_seconds,
    )
