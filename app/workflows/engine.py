"""The durable engine: drive the pure interpreter for Standard executions, one transaction per
step, safe under at-least-once delivery and worker crashes.

A step is: read the execution (or reuse the state this process just wrote), apply one or more
events with :func:`~app.workflows.asl.advance`, and write the new state, the history, the new
task/timer rows and any status-change event in ONE transaction guarded by the execution's
``version`` (compare-and-set). The step registers its commands on the transaction's unit of work
(:func:`~app.workflows.dispatch.send_after_commit`): they are sent to the broker once it
committed -- before the worker chains on inline -- and dropped if it rolled back. So:

* a duplicate message re-applies an event whose ref the execution no longer waits on: the
  interpreter ignores it and nothing is written;
* two workers stepping the same execution (Parallel branches, Map iterations) cannot both
  commit: the loser rolls back, reloads and re-applies its event to the winner's state;
* a worker killed before its commit loses nothing (the step is redone from the rows) and one
  killed after it repeats nothing (the rows say the step is done).

A worker claims a task, then runs the resource outside any transaction (the claim is kept fresh
by :mod:`~app.workflows.leases`; if the worker dies the claim lapses and the sweeper sends the
task again). ``TaskStarted`` is recorded once: with the claim when a timer or a callback could
otherwise overtake it, else together with the result, stamped with the claim's time. After a
step, the worker keeps going with the first task that step scheduled — claimed and started in
the same transaction — for up to :data:`INLINE_BUDGET_SECONDS`, so a sequential workflow does not
pay a broker round trip per Task state; other new tasks and timers go through the broker to any
worker.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import after_commit, get_database, transaction, utcnow
from app.workflows import dispatch, machines, store
from app.workflows.asl import (
    Advance,
    CancelTask,
    Command,
    CompiledMachine,
    Env,
    Event,
    ExecutionState,
    ScheduleTask,
    Stop,
    TaskError,
    TaskFailed,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TimerFired,
    advance,
)
from app.workflows.asl.model import TaskWait
from app.workflows.leases import keeper
from app.workflows.map_runs import service as map_runs
from app.workflows.models import ExecutionTask
from app.workflows.resources import Resource, Submitted, TaskCall, resource_for
from app.workflows.status import from_state, publish

log = logging.getLogger("smokehouse.workflows")

MAX_CONFLICTS: Final = 100
INLINE_BUDGET_SECONDS: Final = 2.0
INLINE_MAX_TASKS: Final = 200

Timed = tuple[Event, datetime]
#: Called inside the step's transaction: the events to apply and bus deliveries it created.
Maker = Callable[[Session, store.Loaded], tuple[list[Timed], list[str]]]


def combine(
    machine: CompiledMachine, state: ExecutionState, events: Sequence[Timed]
) -> Advance | None:
    """Apply events in order as one step; None when the interpreter ignored them all."""
    commands: list[Any] = []
    history: list[Any] = []
    applied = False
    for event, at in events:
        step = advance(machine, state, event, Env.system(at))
        if step.ignored:
            continue
        applied = True
        state = step.state
        commands.extend(step.commands)
        history.extend(step.history)
    return Advance(state, commands, history) if applied else None


@dataclass(slots=True)
class Step:
    applied: bool
    status: str | None = None
    inline: store.Claim | None = None  # a task this step claimed for the caller to run
    after: store.Loaded | None = None  # the execution as this step left it
    written: store.Written = field(default_factory=store.Written)


def apply(
    settings: Settings,
    execution_id: int,
    maker: Maker,
    *,
    rows: Mapping[str, str] | None = None,
    inline: bool = False,
    cached: store.Loaded | None = None,
    session: Session | None = None,
) -> Step:
    """Apply the maker's events to the execution durably; dispatch what the step asks for.

    ``rows`` (ref → status) are task/timer rows the step moves on; if the interpreter ignored
    every event (a late duplicate) they are closed as ``done`` instead, since nothing waits on
    them any more. With ``inline`` the first task the step schedules is claimed (and started)
    for the caller and returned in ``Step.inline``. A worker passes its ``session`` along a
    chain of steps: one connection, no pool checkout per step.
    """
    for attempt in range(MAX_CONFLICTS):
        now = utcnow()
        try:
            with _transaction(settings, session) as session:
                loaded = cached if cached is not None else store.load(session, execution_id)
                cached = None
                if loaded is None:
                    return Step(False)
                events, deliveries = ([], []) if loaded.state.finished else maker(session, loaded)
                machine = machines.compiled(session, loaded.definition_hash)
                step = combine(machine, loaded.state, events) if events else None
                if step is None:
                    for ref, status in (rows or {}).items():
                        store.set_row(session, execution_id, ref, "done" if events else status, now)
                    written = store.Written(deliveries=deliveries)
                    applied = False
                else:
                    step, task = _start_inline(machine, step, now) if inline else (step, None)
                    version, written = store.write_step(
                        session,
                        loaded,
                        step,
                        now,
                        region=settings.region,
                        rows=rows,
                        inline_ref=task.ref if task is not None else None,
                        lease_seconds=settings.workflow_task_lease_seconds,
                    )
                    written.deliveries.extend(deliveries)
                    if step.state.map_runs:  # distributed Maps: their map_runs rows
                        map_runs.sync(session, execution_id, loaded.state, step.state, now)
                    if step.state.finished:
                        written.deliveries.extend(_finished(session, settings, step.state, now))
                        _wake_parent(session, settings, execution_id, now)
                    _stop_children(session, settings, execution_id, step.commands)
                    applied = True
                dispatch.send_after_commit(
                    session,
                    settings,
                    execution_id,
                    written.tasks,
                    written.timers,
                    written.deliveries,
                    now,
                )
        except store.Conflict:
            if attempt > 3:
                time.sleep(random.uniform(0, min(0.05 * attempt, 0.5)))
            continue
        if not applied:
            return Step(False, loaded.status, written=written)
        assert step is not None
        after = store.Loaded(execution_id, loaded.definition_hash, version, step.state, step.status)
        claim = None
        if written.inline is not None:
            claim = store.inline_claim(after, written.inline, now)
        return Step(True, step.state.status, claim, after, written)
    raise RuntimeError(f"execution {execution_id}: {MAX_CONFLICTS} conflicting steps in a row")


@contextmanager
def _transaction(settings: Settings, session: Session | None) -> Iterator[Session]:
    """One unit of work: on the caller's session if it has one, else on a fresh one. Either way
    what the step registered is sent right after its commit (the caller may then run the next
    task inline, which must find its siblings already on the broker) and dropped on rollback."""
    if session is None:
        with get_database(settings.sqlalchemy_url).session() as fresh:
            yield fresh
        return
    with transaction(session):
        yield session
    session.expunge_all()  # ORM objects a step added (bus events) are not needed again


def _start_inline(
    machine: CompiledMachine, step: Advance, now: datetime
) -> tuple[Advance, ScheduleTask | None]:
    """Claim-and-start the first task the step schedules: ``TaskStarted`` joins the step."""
    task = store.first_new_task(step.commands)
    if task is None:
        return step, None
    started = advance(machine, step.state, TaskStarted(task.ref), Env.system(now))
    if started.ignored:  # a distributed Map's own task: it records no TaskStarted
        return step, None
    merged = Advance(
        started.state, [*step.commands, *started.commands], [*step.history, *started.history]
    )
    return merged, task


def _finished(
    session: Session, settings: Settings, state: ExecutionState, now: datetime
) -> list[str]:
    start = datetime.fromisoformat(state.execution.start_time.replace("Z", "+00:00"))
    change = from_state(state, start, now)
    return publish(session, settings.region, settings.account_id, change, now)


# --- nested executions ----------------------------------------------------------------------


def _wake_parent(session: Session, settings: Settings, execution_id: int, now: datetime) -> None:
    """This execution ended: if a ``.sync`` task waits on it, that task is scheduled again in
    this transaction (the durable half) and sent after the commit (the sweeper resends it if
    this worker dies in between)."""
    parent = store.wake_parent(session, execution_id, now)
    if parent is not None:
        after_commit(session).call(dispatch.send, settings, [parent])


def _stop_children(
    session: Session, settings: Settings, execution_id: int, commands: Sequence[Command]
) -> None:
    """Tasks this step cancelled (a stop, a timeout, a failed branch) may be ``.sync`` tasks
    waiting on child executions: those are stopped once this step commits, as AWS stops them.
    The sweeper stops any this worker did not get to."""
    cancelled = [c.ref for c in commands if isinstance(c, CancelTask)]
    if not cancelled:
        return
    children = store.running_children(session, execution_id, cancelled)
    if children:
        after_commit(session).call(stop_executions, settings, children)


def stop_executions(settings: Settings, execution_ids: Sequence[int]) -> int:
    """Stop (``ABORTED``) the executions whose parents no longer wait on them; each is one
    step, which stops their own ``.sync`` children in turn. Returns how many were stopped."""
    stopped = 0
    for execution_id in execution_ids:
        try:
            step = apply(
                settings, execution_id, lambda _s, _l: ([(Stop(None, None), utcnow())], [])
            )
        except Exception:  # the sweeper tries again
            log.exception("could not stop child execution %s", execution_id)
            continue
        stopped += step.applied
    return stopped


# --- tasks ----------------------------------------------------------------------------------


def _call(settings: Settings, claim: store.Claim, session: Session | None = None) -> TaskCall:
    return TaskCall(
        resource=claim.resource,
        parameters=claim.parameters,
        settings=settings,
        execution_arn=claim.execution_arn,
        state_machine_arn=claim.state_machine_arn,
        state_name=claim.state_name,
        ref=claim.ref,
        attempt=claim.attempt,
        token=claim.token,
        timeout_seconds=claim.timeout_seconds,
        session=session,
    )


def _run(resource: Resource | None, call: TaskCall) -> Any:
    if resource is None:
        raise TaskError("States.Runtime", f"unsupported resource {call.resource}")
    return resource.run(call)


def _transactional(resource: Resource | None, settings: Settings, claim: store.Claim) -> bool:
    """Whether the resource runs inside the step's transaction; a resource may decide per call
    (``transactional_for``: a ``.sync`` Express child runs outside it)."""
    if resource is None or not resource.transactional:
        return False
    decide = getattr(resource, "transactional_for", None)
    return True if decide is None else bool(decide(settings, claim.resource, claim.parameters))


def _task_wait(loaded: store.Loaded | None, ref: str) -> TaskWait | None:
    if loaded is None:
        return None
    pending = loaded.state.pending.get(ref)
    frame = None if pending is None else loaded.state.frames.get(pending.frame)
    task = None if frame is None else frame.task
    return task if task is not None and task.ref == ref else None


def _outcome(
    claim: store.Claim,
    resource: Resource | None,
    call: TaskCall,
    loaded: store.Loaded | None = None,
) -> tuple[list[Timed], str]:
    """Run the resource; the events that report it and the row's next status. A resource that
    answers :class:`~app.workflows.resources.Submitted` started a job (a child execution):
    ``TaskSubmitted`` records it and the row waits, unless the job is already over. ``loaded``,
    when known, is the execution this will apply to: events it already holds (a task run again
    to collect its job) are left out, so a waiting row is not closed as a duplicate."""
    task = _task_wait(loaded, claim.ref)
    started: list[Timed] = []
    if not claim.started and not (task is not None and task.started):
        started = [(TaskStarted(claim.ref), claim.claimed_at)]
    try:
        output = _run(resource, call)
    except TaskError as exc:
        return [*started, (TaskFailed(claim.ref, exc.error, exc.cause), utcnow())], "done"
    except Exception as exc:  # a bug in a resource fails the task, not the worker
        log.exception("task %s of execution %s crashed", claim.ref, claim.execution_id)
        cause = f"{type(exc).__name__}: {exc}"
        failed = TaskFailed(claim.ref, "States.TaskFailed", cause)
        return [*started, (failed, utcnow())], "done"
    if isinstance(output, Submitted):
        events = list(started)
        if not (task is not None and task.submitted):
            events.append((TaskSubmitted(claim.ref, output.output), utcnow()))
        if not output.done:
            return events, "waiting"
        if output.error is not None:
            return [*events, (TaskFailed(claim.ref, output.error, output.cause), utcnow())], "done"
        return [*events, (TaskSucceeded(claim.ref, output.result), utcnow())], "done"
    if claim.token is not None:  # .waitForTaskToken: the result comes with the token
        return started, "waiting"
    return [*started, (TaskSucceeded(claim.ref, output), utcnow())], "done"


def execute(
    settings: Settings, claim: store.Claim, *, inline: bool, session: Session | None = None
) -> Step:
    """Run one claimed (and started) task and record its outcome as a step."""
    resource = resource_for(claim.resource)
    if _transactional(resource, settings, claim):
        rows: dict[str, str] = {claim.ref: "done"}

        def in_transaction(session: Session, loaded: store.Loaded) -> tuple[list[Timed], list[str]]:
            if claim.ref not in loaded.state.pending:  # cancelled or answered meanwhile
                return [], []
            call = _call(settings, claim, session)  # it registers its sends on the session
            events, rows[claim.ref] = _outcome(claim, resource, call, loaded)
            return events, []

        return apply(
            settings,
            claim.execution_id,
            in_transaction,
            rows=rows,
            inline=inline,
            cached=claim.cached,
            session=session,
        )

    url, lease = settings.sqlalchemy_url, settings.workflow_task_lease_seconds
    keeper.hold(url, lease, claim.execution_id, claim.ref)
    try:
        events, status = _outcome(claim, resource, _call(settings, claim), claim.cached)
    finally:
        keeper.release(url, lease, claim.execution_id, claim.ref)
    rows = {claim.ref: status}

    def report(session: Session, loaded: store.Loaded) -> tuple[list[Timed], list[str]]:
        return _in_time_order(session, loaded, events, rows), []

    return apply(
        settings,
        claim.execution_id,
        report,
        rows=rows,
        inline=inline,
        cached=claim.cached,
        session=session,
    )


def _in_time_order(
    session: Session, loaded: store.Loaded, events: list[Timed], rows: dict[str, str]
) -> list[Timed]:
    """Timers that came due while the task ran (its TimeoutSeconds, a heartbeat, a Wait in
    another branch) fire before the result, whenever a worker got to them: a result that
    arrives after its task's deadline finds the task timed out, as on AWS."""
    if all(p.kind == "task" for p in loaded.state.pending.values()):
        return events  # nothing can be overdue (the common case: no query)
    now = events[-1][1] if events else utcnow()
    overdue = store.overdue_timers(session, loaded.id, now)
    for ref, _ in overdue:
        rows[ref] = "done"
    fired: list[Timed] = [(TimerFired(ref), due) for ref, due in overdue]
    return sorted([*fired, *events], key=lambda timed: timed[1])


def chain(settings: Settings, claim: store.Claim | None, session: Session) -> int:
    """Run a claimed task, then the tasks its steps schedule, within the inline budget."""
    deadline = time.monotonic() + INLINE_BUDGET_SECONDS
    ran = 0
    while claim is not None:
        ran += 1
        keep_going = ran < INLINE_MAX_TASKS and time.monotonic() < deadline
        claim = execute(settings, claim, inline=keep_going, session=session).inline
    return ran


def _claim(settings: Settings, session: Session, execution_id: int, ref: str) -> store.Claim | None:
    """Claim a task for this worker; record ``TaskStarted`` at once only when the execution
    could observe the difference (:attr:`~app.workflows.store.Claim.observable_start`)."""
    with session.begin():
        loaded = store.load(session, execution_id)
        if loaded is None or loaded.state.finished:
            return None
        claim = store.claim_task(
            session, loaded, ref, utcnow(), settings.workflow_task_lease_seconds
        )
    session.expunge_all()
    if claim is None or not claim.observable_start:
        return claim
    step = apply(
        settings,
        execution_id,
        lambda _session, _loaded: ([(TaskStarted(ref), claim.claimed_at)], []),
        cached=loaded,
        session=session,
    )
    claim.started = True  # now, or by the attempt of a worker that died
    claim.cached = step.after
    return claim


def run_task(settings: Settings, execution_id: int, ref: str) -> str:
    """``workflows.run_task``: claim the task (a duplicate, a finished task or one the execution
    no longer waits on is skipped), then run it and whatever it leads to."""
    with get_database(settings.sqlalchemy_url).sessions() as session:
        claim = _claim(settings, session, execution_id, ref)
        if claim is None:
            return "skipped"
        chain(settings, claim, session)
    return "ran"


def fire_timer(settings: Settings, execution_id: int, ref: str) -> str:
    """``workflows.fire_timer``: deliver ``TimerFired`` once the timer is due."""
    with get_database(settings.sqlalchemy_url).sessions() as session:
        with session.begin():
            row = session.execute(
                select(ExecutionTask.status, ExecutionTask.due_at).where(
                    ExecutionTask.execution_id == execution_id, ExecutionTask.ref == ref
                )
            ).first()
        if row is None or row[0] != "scheduled":
            return "skipped"
        early = (row[1] - utcnow()).total_seconds()
        if early > 0.05:  # a countdown measured on another clock: come back when due
            dispatch.send(settings, timers=[(execution_id, ref, early)])
            return "early"
        step = apply(
            settings,
            execution_id,
            lambda _session, _loaded: ([(TimerFired(ref), utcnow())], []),
            rows={ref: "done"},
            inline=True,
            session=session,
        )
        chain(settings, step.inline, session)
    return "fired" if step.applied else "skipped"
