"""Express executions: the interpreter driven in-process, nothing persisted — the hot path.

Tasks run synchronously in the calling thread; timers (Wait states, retry backoff) wait on the
real clock, and a task that overruns its ``TimeoutSeconds`` times out when it returns (a
synchronous call cannot be interrupted). Like AWS, an Express execution lasts at most five
minutes and has no ``.waitForTaskToken``; its history is kept only when asked for
(``StartSyncExecution`` does not return one). ``events:putEvents`` commits its own transaction.
"""

from __future__ import annotations

import heapq
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.config import Settings
from app.db import get_database
from app.workflows import arns, errors
from app.workflows.asl import (
    CancelTimer,
    Command,
    CompiledMachine,
    Env,
    Event,
    ExecutionState,
    HistoryEvent,
    ScheduleTask,
    Start,
    StartTimer,
    TaskError,
    TaskFailed,
    TaskSucceeded,
    TimerFired,
    advance,
    event_to_dict,
)
from app.workflows.models import StateMachine
from app.workflows.resources import TaskCall, resource_for
from app.workflows.service import parse_input

MAX_DURATION: Final = timedelta(minutes=5)


@dataclass(slots=True)
class ExpressResult:
    status: str
    output: Any
    error: str | None
    cause: str | None
    start_date: datetime
    stop_date: datetime
    history: list[HistoryEvent] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class _Run:
    def __init__(self, settings: Settings, machine: CompiledMachine, start: Start) -> None:
        self.settings = settings
        self.machine = machine
        self.start = start
        self.queue: list[tuple[datetime, int, Event]] = []  # (when, seq, event)
        self.cancelled: set[str] = set()
        self.seq = 0

    def push(self, when: datetime, event: Event) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, event))

    def handle(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, ScheduleTask):
                self.push(*self.run_task(command))
            elif isinstance(command, StartTimer):
                self.cancelled.discard(command.ref)
                self.push(command.fire_at_datetime, TimerFired(command.ref))
            elif isinstance(command, CancelTimer):
                self.cancelled.add(command.ref)

    def run_task(self, command: ScheduleTask) -> tuple[datetime, Event]:
        resource = resource_for(command.resource)
        call = TaskCall(
            resource=command.resource,
            parameters=command.parameters,
            settings=self.settings,
            execution_arn=self.start.execution_id,
            state_machine_arn=self.start.state_machine_id,
            state_name=command.state_name,
            ref=command.ref,
            timeout_seconds=command.timeout_seconds,
        )
        try:
            if resource is None:
                raise TaskError("States.Runtime", f"unsupported resource {command.resource}")
            if resource.transactional:
                database = get_database(self.settings.sqlalchemy_url)
                with database.session() as session:  # sends what it registered on commit
                    call.session = session
                    output = resource.run(call)
            else:
                output = resource.run(call)
        except TaskError as exc:
            return _now(), TaskFailed(command.ref, exc.error, exc.cause)
        except Exception as exc:  # a failing resource fails the task, not the caller
            return _now(), TaskFailed(
                command.ref, "States.TaskFailed", f"{type(exc).__name__}: {exc}"
            )
        return _now(), TaskSucceeded(command.ref, output)

    def execute(self, keep_history: bool) -> ExpressResult:
        started = _now()
        deadline = started + MAX_DURATION
        history: list[HistoryEvent] = []
        step = advance(self.machine, None, self.start, Env.system(started))
        state: ExecutionState = step.state
        if keep_history:
            history.extend(step.history)
        self.handle(step.commands)
        while not state.finished:
            if not self.queue:
                raise RuntimeError("the execution waits on a task that never answers")
            when, _, event = heapq.heappop(self.queue)
            if isinstance(event, TimerFired) and event.ref in self.cancelled:
                continue
            if when > deadline:
                return ExpressResult(
                    "TIMED_OUT",
                    None,
                    "States.Timeout",
                    "Express executions last at most five minutes.",
                    started,
                    _now(),
                    history,
                )
            wait = (when - _now()).total_seconds()
            if wait > 0:
                time.sleep(wait)
            step = advance(self.machine, state, event, Env.system(max(when, _now())))
            if step.ignored:
                continue
            state = step.state
            if keep_history:
                history.extend(step.history)
            self.handle(step.commands)
        return ExpressResult(
            state.status, state.output, state.error, state.cause, started, _now(), history
        )


def new_start(settings: Settings, machine: StateMachine, name: Any, input_text: Any) -> Start:
    """The Start of an Express execution (its ARN carries a fresh run id, as on AWS)."""
    name = arns.check_name(str(uuid.uuid4()) if name is None else name)
    _, data = parse_input(input_text)
    arn = arns.Scope(settings.region, settings.account_id).express_execution(
        machine.name, name, str(uuid.uuid4())
    )
    return Start(data, arn, name, machine.arn, machine.name, machine.role_arn)


def prepare(settings: Settings, machine: StateMachine, name: Any, input_text: Any) -> Start:
    """StartExecution's checks for an Express machine, and the Start to run."""
    if machine.status == "DELETING":
        raise errors.state_machine_deleting(machine.arn)
    return new_start(settings, machine, name, input_text)


def payload(machine: StateMachine, start: Start) -> dict[str, Any]:
    """What ``workflows.run_express`` needs to run an asynchronous Express execution."""
    return {"definition_hash": machine.definition_hash, "start": event_to_dict(start)}


def run(
    settings: Settings, machine: CompiledMachine, start: Start, *, history: bool = False
) -> ExpressResult:
    """Run one Express execution to its end in this thread."""
    return _Run(settings, machine, start).execute(history)
