"""The step engine: a pure, resumable interpreter for JSONPath state machines.

``advance(machine, state, event, env) -> Advance`` takes the persisted
:class:`~app.workflows.asl.model.ExecutionState` (or ``None`` for a :class:`Start`), one event
and the environment (time, randomness, UUIDs) and returns the new state, the commands for the
host (run a task, start a timer, ...) and the history events to append. It never sleeps, never
does I/O and never mutates its arguments. Consecutive states that need no I/O (Pass, Choice,
Succeed, Fail, ...) run in the same call, until every running workflow waits on a task, a timer
or the end.

Parallel branches and Map iterations run as child frames inside the same state, so several
tasks can be outstanding at once. Every task and timer gets a ref that is unique and
deterministic for its place in the execution::

    Task2@1.0                 state Task2, 1st visit, attempt 0 (the first try)
    Task2@1.1:retry           the timer before attempt 1
    Map1@1.0[3]/Task2@1.0     the same task inside iteration 3 of Map1
    Par@2.0[1]/Wait@1:wait    a Wait timer in branch 1 of the 2nd visit of Par
    $execution:timeout        the state machine's TimeoutSeconds

An event whose ref the execution no longer waits on (a duplicate delivery, a timer that was
cancelled, a result from an attempt that already timed out) is ignored: ``Advance.ignored`` is
true and the state is unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from app.common.jsonpath import MISSING, JsonPath, parse
from app.workflows.asl import errors, paths
from app.workflows.asl.choice import ChoiceBranch, choose, compile_choices, parse_timestamp
from app.workflows.asl.errors import InvalidDefinition, StatesError
from app.workflows.asl.model import (
    Advance,
    CancelTask,
    CancelTimer,
    ChildRun,
    Command,
    Env,
    Event,
    ExecutionInfo,
    ExecutionState,
    Frame,
    HistoryEvent,
    PendingRef,
    ScheduleTask,
    Start,
    StartTimer,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSucceeded,
    TaskWait,
    TimerFired,
    TimerPurpose,
    event_from_dict,
    event_to_dict,
    iso,
)
from app.workflows.asl.paths import Scope, TNode, compact, compile_template, render, select
from app.workflows.asl.retry import Catcher, Retrier, backoff_delay, find_catcher, find_retrier
from app.workflows.asl.validate import load_definition, validate_definition

EXECUTION_TIMEOUT_REF: Final = "$execution:timeout"
_RESULT_PATH_TYPES: Final = frozenset({"Pass", "Task", "Parallel", "Map"})


# --- Compiled definition --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateDef:
    """One state with its paths, templates, rules and retriers compiled."""

    name: str
    type: str
    next: str | None = None
    end: bool = False
    input_path: JsonPath | None = None
    output_path: JsonPath | None = None
    result_path: JsonPath | None = None
    parameters: TNode | None = None
    result_selector: TNode | None = None
    result: Any = None
    has_result: bool = False
    resource: str = ""
    retriers: tuple[Retrier, ...] = ()
    catchers: tuple[Catcher, ...] = ()
    timeout_seconds: int | None = None
    timeout_seconds_path: JsonPath | None = None
    heartbeat_seconds: int | None = None
    heartbeat_seconds_path: JsonPath | None = None
    choices: tuple[ChoiceBranch, ...] = ()
    default: str | None = None
    seconds: int | None = None
    seconds_path: JsonPath | None = None
    timestamp: str | None = None
    timestamp_path: JsonPath | None = None
    error: str | None = None
    error_path: str | None = None
    cause: str | None = None
    cause_path: str | None = None
    branches: tuple[str, ...] = ()
    items_path: JsonPath | None = None
    item_selector: TNode | None = None
    processor: str | None = None
    max_concurrency: int = 0
    max_concurrency_path: JsonPath | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    key: str  # "" for the state machine; "/States/P/Branches/0", "/States/M/ItemProcessor", ...
    start_at: str
    states: dict[str, StateDef]


@dataclass(frozen=True, slots=True)
class CompiledMachine:
    definition: dict[str, Any]
    workflows: dict[str, Workflow]
    timeout_seconds: int | None = None

    def state(self, workflow: str, name: str) -> StateDef:
        return self.workflows[workflow].states[name]


def _path_field(raw: dict[str, Any], name: str, default: str | None = "$") -> JsonPath | None:
    if name not in raw:
        return parse(default) if default is not None else None
    value = raw[name]
    return None if value is None else parse(value)


def _compile_state(name: str, raw: dict[str, Any], key: str, out: dict[str, Workflow]) -> StateDef:
    kind = raw["Type"]
    here = f"{key}/States/{name}"
    fields: dict[str, Any] = {
        "name": name,
        "type": kind,
        "next": raw.get("Next"),
        "end": raw.get("End") is True or kind in ("Succeed", "Fail"),
        "input_path": _path_field(raw, "InputPath"),
        "output_path": _path_field(raw, "OutputPath"),
        "result_path": _path_field(raw, "ResultPath"),
        "retriers": tuple(Retrier.from_json(r) for r in raw.get("Retry", ())),
        "catchers": tuple(Catcher.from_json(c) for c in raw.get("Catch", ())),
    }
    if "ResultSelector" in raw:
        fields["result_selector"] = compile_template(raw["ResultSelector"])
    if kind == "Map":
        selector = raw.get("ItemSelector", raw.get("Parameters"))
        if selector is not None:
            fields["item_selector"] = compile_template(selector)
        fields["items_path"] = _path_field(raw, "ItemsPath")
        fields["max_concurrency"] = raw.get("MaxConcurrency", 0)
        fields["max_concurrency_path"] = _path_field(raw, "MaxConcurrencyPath", None)
        proc_field = "ItemProcessor" if "ItemProcessor" in raw else "Iterator"
        proc_key = f"{here}/{proc_field}"
        _compile_workflow(raw[proc_field], proc_key, out)
        fields["processor"] = proc_key
    elif "Parameters" in raw:
        fields["parameters"] = compile_template(raw["Parameters"])
    if kind == "Pass" and "Result" in raw:
        fields["result"] = raw["Result"]
        fields["has_result"] = True
    if kind == "Task":
        fields["resource"] = raw["Resource"]
        fields["timeout_seconds"] = raw.get("TimeoutSeconds")
        fields["timeout_seconds_path"] = _path_field(raw, "TimeoutSecondsPath", None)
        fields["heartbeat_seconds"] = raw.get("HeartbeatSeconds")
        fields["heartbeat_seconds_path"] = _path_field(raw, "HeartbeatSecondsPath", None)
    if kind == "Choice":
        fields["choices"] = compile_choices(raw["Choices"])
        fields["default"] = raw.get("Default")
    if kind == "Wait":
        fields["seconds"] = raw.get("Seconds")
        fields["seconds_path"] = _path_field(raw, "SecondsPath", None)
        fields["timestamp"] = raw.get("Timestamp")
        fields["timestamp_path"] = _path_field(raw, "TimestampPath", None)
    if kind == "Fail":
        for f in ("Error", "ErrorPath", "Cause", "CausePath"):
            fields[re.sub(r"(?<!^)([A-Z])", r"_\1", f).lower()] = raw.get(f)
    if kind == "Parallel":
        keys = []
        for i, branch in enumerate(raw["Branches"]):
            branch_key = f"{here}/Branches/{i}"
            _compile_workflow(branch, branch_key, out)
            keys.append(branch_key)
        fields["branches"] = tuple(keys)
    return StateDef(**fields)


def _compile_workflow(raw: dict[str, Any], key: str, out: dict[str, Workflow]) -> None:
    states = {name: _compile_state(name, sd, key, out) for name, sd in raw["States"].items()}
    out[key] = Workflow(key, raw["StartAt"], states)


def compile_machine(definition: dict[str, Any] | str) -> CompiledMachine:
    """Validate and compile a definition; raises :class:`InvalidDefinition`."""
    raw = load_definition(definition)
    problems = [d for d in validate_definition(raw) if d.severity == "ERROR"]
    if problems:
        raise InvalidDefinition(problems)
    assert isinstance(raw, dict)
    workflows: dict[str, Workflow] = {}
    _compile_workflow(raw, "", workflows)
    return CompiledMachine(raw, workflows, raw.get("TimeoutSeconds"))


# --- History helpers ------------------------------------------------------------------------------


def resource_parts(resource: str) -> tuple[str, str]:
    """``(resourceType, resource)`` as Step Functions splits them in Task* history events."""
    m = re.fullmatch(r"arn:[^:]+:states:::([^:]+):(.+)", resource)
    if m:
        return m.group(1), m.group(2)
    if re.match(r"arn:[^:]+:lambda:", resource):
        return "lambda", resource
    head, sep, tail = resource.partition(":")
    return (head, tail) if sep and tail else ("task", resource)


def _io(key: str, value: Any) -> dict[str, Any]:
    return {key: compact(value), f"{key}Details": {"truncated": False}}


def _error_details(error: str | None, cause: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if error is not None:
        out["error"] = error
    if cause is not None:
        out["cause"] = cause
    return out


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


# --- The engine -----------------------------------------------------------------------------------


class _Run:
    def __init__(self, machine: CompiledMachine, st: ExecutionState, env: Env):
        self.m = machine
        self.st = st
        self.env = env
        self.now = iso(env.now)
        self.commands: list[Command] = []
        self.history: list[HistoryEvent] = []
        self.queue: deque[str] = deque()

    # history & bookkeeping -------------------------------------------------------------------

    def emit(
        self,
        frame: Frame | None,
        kind: str,
        key: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        previous: int | None = None,
    ) -> int:
        event_id = self.st.next_event_id
        self.st.next_event_id += 1
        if previous is None:
            previous = frame.last_event_id if frame is not None else 0
        self.history.append(HistoryEvent(event_id, previous, self.now, kind, key, details))
        if frame is not None:
            frame.last_event_id = event_id
        return event_id

    def context(
        self,
        frame: Frame,
        *,
        token: str | None = None,
        item: tuple[int, Any] | None = None,
    ) -> dict[str, Any]:
        ex = self.st.execution
        ctx: dict[str, Any] = {
            "Execution": {
                "Id": ex.id,
                "Input": ex.input,
                "Name": ex.name,
                "RoleArn": ex.role_arn,
                "StartTime": ex.start_time,
                "RedriveCount": 0,
            },
            "State": {
                "EnteredTime": frame.entered_time,
                "Name": frame.state,
                "RetryCount": sum(frame.retry_counts),
            },
            "StateMachine": {"Id": ex.state_machine_id, "Name": ex.state_machine_name},
        }
        if token is not None:
            ctx["Task"] = {"Token": token}
        if item is not None:
            ctx["Map"] = {"Item": {"Index": item[0], "Value": item[1]}}
        return ctx

    def scope(self, data: Any, ctx: dict[str, Any]) -> Scope:
        return Scope(data, ctx, self.env.random, self.env.uuid)

    def timer(self, ref: str, seconds: float, purpose: TimerPurpose, frame_id: str) -> None:
        fire_at = self.env.now + timedelta(seconds=seconds)
        self.st.pending[ref] = PendingRef(purpose, frame_id)
        self.commands.append(StartTimer(ref, iso(fire_at), purpose))

    def cancel_timer(self, ref: str | None) -> None:
        if ref is not None and self.st.pending.pop(ref, None) is not None:
            self.commands.append(CancelTimer(ref))

    @staticmethod
    def prefix(frame: Frame) -> str:
        return f"{frame.id}/" if frame.id else ""

    def sdef(self, frame: Frame) -> StateDef:
        assert frame.state is not None
        return self.m.state(frame.workflow, frame.state)

    # driving ---------------------------------------------------------------------------------

    def drain(self) -> None:
        while self.queue and self.st.status == "RUNNING":
            frame = self.st.frames.get(self.queue.popleft())
            while (
                frame is not None
                and frame.status == "running"
                and frame.phase in ("enter", "rerun")
                and self.st.status == "RUNNING"
            ):
                if frame.phase == "enter":
                    self.enter_state(frame)
                else:
                    frame.phase = "task"  # placeholder: the state's handler sets the real phase
                    self.run_state(frame, self.sdef(frame))

    def start(self, event: Start) -> None:
        root = Frame(id="", workflow="", parent=None, index=0)
        root.state = self.m.workflows[""].start_at
        root.input = event.input
        self.st.frames[""] = root
        self.emit(
            None,
            "ExecutionStarted",
            "executionStartedEventDetails",
            {**_io("input", event.input), "roleArn": event.role_arn},
        )
        if paths.payload_size(event.input) > paths.MAX_PAYLOAD_BYTES:
            self.end_execution(
                "FAILED",
                error=errors.DATA_LIMIT_EXCEEDED,
                cause="The execution input exceeds the maximum number of bytes service limit.",
                previous=0,
            )
            return
        if self.m.timeout_seconds is not None:
            self.timer(EXECUTION_TIMEOUT_REF, self.m.timeout_seconds, "execution_timeout", "")
        self.queue.append("")

    # states ----------------------------------------------------------------------------------

    def enter_state(self, frame: Frame) -> None:
        sd = self.sdef(frame)
        frame.visits[sd.name] = frame.visits.get(sd.name, 0) + 1
        frame.visit = frame.visits[sd.name]
        frame.attempt = 0
        frame.retry_counts = [0] * len(sd.retriers)
        frame.entered_time = self.now
        frame.effective = None
        frame.entered_event_id = self.emit(
            frame,
            f"{sd.type}StateEntered",
            "stateEnteredEventDetails",
            {"name": sd.name, **_io("input", frame.input)},
        )
        self.run_state(frame, sd)

    def run_state(self, frame: Frame, sd: StateDef) -> None:
        """Run (or, after a retry timer, re-run) the body of the current state."""
        try:
            handler = getattr(self, f"run_{sd.type.lower()}")
            handler(frame, sd)
        except StatesError as err:
            self.state_failed(frame, sd, err)

    def run_pass(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        effective = select(sd.input_path, frame.input, ctx)
        if sd.parameters is not None:
            effective = render(sd.parameters, self.scope(effective, ctx))
        self.finish_state(frame, sd, sd.result if sd.has_result else effective)

    def run_succeed(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        self.exit_state(frame, sd, select(sd.input_path, frame.input, ctx), None, ctx)

    def run_choice(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        effective = select(sd.input_path, frame.input, ctx)
        target = choose(sd.choices, sd.default, effective, ctx)
        self.exit_state(frame, sd, effective, target, ctx)

    def run_wait(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        effective = select(sd.input_path, frame.input, ctx)
        frame.effective = effective
        if sd.seconds is not None or sd.seconds_path is not None:
            seconds: Any = sd.seconds
            if sd.seconds_path is not None:
                seconds = _positive_int(paths.read_path(sd.seconds_path, effective, ctx))
                if seconds is None or seconds < 0:
                    raise errors.runtime_error(
                        f"Invalid path '{sd.seconds_path.text}': The SecondsPath parameter does "
                        "not reference a valid non-negative integer value."
                    )
            fire_at = self.env.now + timedelta(seconds=seconds)
        else:
            stamp: Any = sd.timestamp
            if sd.timestamp_path is not None:
                stamp = paths.read_path(sd.timestamp_path, effective, ctx)
            parsed = parse_timestamp(stamp)
            if parsed is None:
                where = sd.timestamp_path.text if sd.timestamp_path else "Timestamp"
                raise errors.runtime_error(
                    f"Invalid path '{where}': The TimestampPath parameter does not reference a "
                    "valid ISO-8601 extended offset date-time format string."
                )
            fire_at = parsed
        seconds_left = (fire_at - self.env.now).total_seconds()
        if seconds_left <= 0:
            self.complete_wait(frame, sd)
            return
        ref = f"{self.prefix(frame)}{sd.name}@{frame.visit}:wait"
        frame.wait_ref = ref
        frame.phase = "wait"
        self.timer(ref, seconds_left, "wait", frame.id)

    def complete_wait(self, frame: Frame, sd: StateDef) -> None:
        frame.wait_ref = None
        frame.phase = "enter"
        self.exit_state(frame, sd, frame.effective, sd.next, self.context(frame))

    def run_fail(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        scope = self.scope(frame.input, ctx)
        error, cause = sd.error, sd.cause
        if sd.error_path is not None:
            value = paths.evaluate_dynamic(sd.error_path, scope)
            if not isinstance(value, str):
                raise errors.runtime_error(
                    f"The ErrorPath '{sd.error_path}' does not resolve to a string: "
                    f"{compact(value)}"
                )
            error = value
        if sd.cause_path is not None:
            value = paths.evaluate_dynamic(sd.cause_path, scope)
            if not isinstance(value, str):
                raise errors.runtime_error(
                    f"The CausePath '{sd.cause_path}' does not resolve to a string: "
                    f"{compact(value)}"
                )
            cause = value
        self.frame_failed(frame, error, cause)

    def run_task(self, frame: Frame, sd: StateDef) -> None:
        token = self.env.uuid() if sd.resource.endswith(".waitForTaskToken") else None
        ctx = self.context(frame, token=token)
        effective = select(sd.input_path, frame.input, ctx)
        parameters = effective
        if sd.parameters is not None:
            parameters = render(sd.parameters, self.scope(effective, ctx))
        paths.check_payload_size(parameters, sd.name)
        timeout = self.seconds_field(sd.timeout_seconds, sd.timeout_seconds_path, effective, ctx)
        heartbeat = self.seconds_field(
            sd.heartbeat_seconds, sd.heartbeat_seconds_path, effective, ctx
        )
        ref = f"{self.prefix(frame)}{sd.name}@{frame.visit}.{frame.attempt}"
        task = TaskWait(ref, sd.resource, token, heartbeat_seconds=heartbeat)
        frame.task = task
        frame.phase = "task"
        self.st.pending[ref] = PendingRef("task", frame.id)
        self.commands.append(
            ScheduleTask(ref, sd.name, sd.resource, parameters, timeout, heartbeat, token)
        )
        resource_type, resource = resource_parts(sd.resource)
        details: dict[str, Any] = {
            "resourceType": resource_type,
            "resource": resource,
            "parameters": compact(parameters),
        }
        if timeout is not None:
            details["timeoutInSeconds"] = timeout
        if heartbeat is not None:
            details["heartbeatInSeconds"] = heartbeat
        self.emit(frame, "TaskScheduled", "taskScheduledEventDetails", details)
        if timeout is not None:
            task.timeout_ref = f"{ref}:timeout"
            self.timer(task.timeout_ref, timeout, "timeout", frame.id)
        if heartbeat is not None:
            task.heartbeat_ref = f"{ref}:heartbeat.0"
            self.timer(task.heartbeat_ref, heartbeat, "heartbeat", frame.id)

    @staticmethod
    def seconds_field(
        literal: int | None, path: JsonPath | None, data: Any, ctx: dict[str, Any]
    ) -> int | None:
        if path is None:
            return literal
        value = _positive_int(paths.read_path(path, data, ctx))
        if value is None or value <= 0:
            raise errors.runtime_error(
                f"Invalid path '{path.text}': The path does not reference a positive integer value."
            )
        return value

    def run_parallel(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        effective = select(sd.input_path, frame.input, ctx)
        if sd.parameters is not None:
            effective = render(sd.parameters, self.scope(effective, ctx))
        started = self.emit(frame, "ParallelStateStarted")
        count = len(sd.branches)
        frame.children = ChildRun(
            "Parallel", count, [], 0, started_event_id=started, results=[None] * count
        )
        frame.phase = "children"
        for i, key in enumerate(sd.branches):
            self.spawn(frame, sd, i, key, effective, started)

    def run_map(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        effective = select(sd.input_path, frame.input, ctx)
        items = select(sd.items_path, effective, ctx)
        if not isinstance(items, list):
            where = sd.items_path.text if sd.items_path is not None else "$"
            raise errors.runtime_error(
                f"Invalid path '{where}': The ItemsPath field does not reference a JSON array: "
                f"{compact(items)}"
            )
        limit = sd.max_concurrency
        if sd.max_concurrency_path is not None:
            value = _positive_int(paths.read_path(sd.max_concurrency_path, effective, ctx))
            if value is None or value < 0:
                raise errors.runtime_error(
                    f"Invalid path '{sd.max_concurrency_path.text}': The MaxConcurrencyPath "
                    "field does not reference a non-negative integer value."
                )
            limit = value
        inputs = items
        if sd.item_selector is not None:
            inputs = [
                render(sd.item_selector, self.scope(effective, self.context(frame, item=(i, v))))
                for i, v in enumerate(items)
            ]
        started = self.emit(
            frame, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)}
        )
        frame.children = ChildRun(
            "Map",
            len(items),
            list(inputs),
            limit,
            started_event_id=started,
            results=[None] * len(items),
        )
        frame.phase = "children"
        if not items:
            self.children_done(frame, sd)
            return
        self.fill_map(frame, sd)

    def fill_map(self, frame: Frame, sd: StateDef) -> None:
        run = frame.children
        assert run is not None
        assert sd.processor is not None
        while run.started < run.total and (
            run.max_concurrency == 0 or len(run.running) < run.max_concurrency
        ):
            index = run.started
            iteration_started = self.emit(
                None,
                "MapIterationStarted",
                "mapIterationStartedEventDetails",
                {"name": sd.name, "index": index},
                previous=run.started_event_id,
            )
            self.spawn(frame, sd, index, sd.processor, run.inputs[index], iteration_started)
            run.inputs[index] = None  # the child frame holds it now

    def spawn(
        self, parent: Frame, sd: StateDef, index: int, workflow: str, value: Any, chain: int
    ) -> None:
        run = parent.children
        assert run is not None
        child_id = f"{self.prefix(parent)}{sd.name}@{parent.visit}.{parent.attempt}[{index}]"
        child = Frame(id=child_id, workflow=workflow, parent=parent.id, index=index)
        child.state = self.m.workflows[workflow].start_at
        child.input = value
        child.last_event_id = chain
        self.st.frames[child_id] = child
        run.running.append(child_id)
        run.started += 1
        self.queue.append(child_id)

    # leaving states --------------------------------------------------------------------------

    def finish_state(self, frame: Frame, sd: StateDef, result: Any) -> None:
        """ResultPath, OutputPath, the size check, the Exited event and the transition."""
        ctx = self.context(frame)
        merged = paths.apply_result_path(sd.result_path, frame.input, result)
        self.exit_state(frame, sd, merged, sd.next, ctx)

    def exit_state(
        self, frame: Frame, sd: StateDef, value: Any, target: str | None, ctx: dict[str, Any]
    ) -> None:
        output = select(sd.output_path, value, ctx)
        paths.check_payload_size(output, sd.name)
        self.emit(
            frame,
            f"{sd.type}StateExited",
            "stateExitedEventDetails",
            {"name": sd.name, **_io("output", output)},
        )
        self.transition(frame, target, output)

    def transition(self, frame: Frame, target: str | None, output: Any) -> None:
        if target is None:
            self.frame_succeeded(frame, output)
            return
        frame.state = target
        frame.input = output
        frame.effective = None
        frame.task = None
        frame.phase = "enter"

    def prefixed(self, frame: Frame, sd: StateDef, err: StatesError) -> str | None:
        if not err.state_scoped:
            return err.cause
        head = (
            f"An error occurred while executing the state '{sd.name}' "
            f"(entered at the event id #{frame.entered_event_id})."
        )
        return f"{head} {err.cause}" if err.cause else head

    def state_failed(
        self, frame: Frame, sd: StateDef, err: StatesError, *, from_task: bool = False
    ) -> None:
        """Retry, catch, or fail the frame."""
        cause = self.prefixed(frame, sd, err)
        if err.error == errors.RUNTIME:
            self.end_execution("FAILED", error=err.error, cause=cause, previous=frame.last_event_id)
            return
        index = find_retrier(sd.retriers, err.error, from_task=from_task)
        if index is not None and frame.retry_counts[index] < sd.retriers[index].max_attempts:
            self.schedule_retry(frame, sd, index, sd.retriers[index])
            return
        if sd.type in ("Parallel", "Map"):
            self.emit(frame, f"{sd.type}StateFailed")
        catcher = find_catcher(sd.catchers, err.error, from_task=from_task)
        if catcher is not None:
            self.catch(frame, sd, catcher, err.error, cause)
            return
        if sd.type == "Task" and frame.parent is not None:
            self.emit(None, "TaskStateAborted", previous=frame.last_event_id)
        self.frame_failed(frame, err.error, cause)

    def schedule_retry(self, frame: Frame, sd: StateDef, index: int, retrier: Retrier) -> None:
        delay = backoff_delay(retrier, frame.retry_counts[index], self.env.random)
        frame.retry_counts[index] += 1
        frame.attempt += 1
        frame.task = None
        frame.children = None
        if delay <= 0:
            frame.phase = "rerun"  # run again from the drain loop, not recursively
            self.queue.append(frame.id)
            return
        ref = f"{self.prefix(frame)}{sd.name}@{frame.visit}.{frame.attempt}:retry"
        frame.retry_ref = ref
        frame.phase = "retry"
        self.timer(ref, delay, "retry", frame.id)

    def catch(
        self, frame: Frame, sd: StateDef, catcher: Catcher, error: str, cause: str | None
    ) -> None:
        error_output: dict[str, Any] = {"Error": error}
        if cause is not None:
            error_output["Cause"] = cause
        try:
            output = paths.apply_result_path(catcher.result_path, frame.input, error_output)
        except StatesError as err:
            self.frame_failed(frame, err.error, self.prefixed(frame, sd, err))
            return
        self.emit(
            frame,
            f"{sd.type}StateExited",
            "stateExitedEventDetails",
            {"name": sd.name, **_io("output", output)},
        )
        self.transition(frame, catcher.next, output)

    # frames ----------------------------------------------------------------------------------

    def frame_succeeded(self, frame: Frame, output: Any) -> None:
        frame.status = "succeeded"
        frame.phase = "done"
        frame.output = output
        if frame.parent is None:
            self.end_execution("SUCCEEDED", output=output, previous=frame.last_event_id)
            return
        parent = self.st.frames[frame.parent]
        run = parent.children
        assert run is not None
        psd = self.sdef(parent)
        run.results[frame.index] = output
        run.done += 1
        run.running.remove(frame.id)
        del self.st.frames[frame.id]
        if run.kind == "Map":
            succeeded = self.emit(
                None,
                "MapIterationSucceeded",
                "mapIterationSucceededEventDetails",
                {"name": psd.name, "index": frame.index},
                previous=frame.last_event_id,
            )
            parent.last_event_id = max(parent.last_event_id, succeeded)
            self.fill_map(parent, psd)
        else:
            parent.last_event_id = max(parent.last_event_id, frame.last_event_id)
        if run.done == run.total:
            self.children_done(parent, psd)

    def children_done(self, parent: Frame, sd: StateDef) -> None:
        run = parent.children
        assert run is not None
        results = run.results
        parent.children = None
        parent.phase = "enter"
        self.emit(None, f"{sd.type}StateSucceeded", previous=parent.last_event_id)
        try:
            result = results
            if sd.result_selector is not None:
                result = render(sd.result_selector, self.scope(results, self.context(parent)))
            self.finish_state(parent, sd, result)
        except StatesError as err:
            self.state_failed(parent, sd, err)
        self.queue.append(parent.id)

    def frame_failed(self, frame: Frame, error: str | None, cause: str | None) -> None:
        frame.status = "failed"
        frame.phase = "done"
        frame.error, frame.cause = error, cause
        if frame.parent is None:
            self.end_execution("FAILED", error=error, cause=cause, previous=frame.last_event_id)
            return
        parent = self.st.frames[frame.parent]
        run = parent.children
        assert run is not None
        psd = self.sdef(parent)
        for sibling in list(run.running):
            if sibling != frame.id:
                self.abort_frame(sibling)
        if run.kind == "Map":
            self.emit(
                None,
                "MapIterationFailed",
                "mapIterationFailedEventDetails",
                {"name": psd.name, "index": frame.index},
                previous=frame.last_event_id,
            )
        parent.last_event_id = max(parent.last_event_id, frame.last_event_id)
        self.st.frames.pop(frame.id, None)
        parent.children = None
        parent.phase = "enter"
        self.state_failed(
            parent,
            psd,
            StatesError(error or errors.BRANCH_FAILED, cause, state_scoped=False),
        )
        self.queue.append(parent.id)

    def abort_frame(self, frame_id: str) -> None:
        """Stop a running branch/iteration and everything below it."""
        frame = self.st.frames.pop(frame_id, None)
        if frame is None:
            return
        if frame.children is not None:
            for child in list(frame.children.running):
                self.abort_frame(child)
        self.release(frame)
        if frame.parent is not None:
            parent = self.st.frames.get(frame.parent)
            if parent is not None and parent.children is not None:
                if frame_id in parent.children.running:
                    parent.children.running.remove(frame_id)
                if parent.children.kind == "Map":
                    self.emit(
                        None,
                        "MapIterationAborted",
                        "mapIterationAbortedEventDetails",
                        {"name": parent.state, "index": frame.index},
                        previous=frame.last_event_id,
                    )

    def release(self, frame: Frame) -> None:
        """Cancel whatever the frame waits on."""
        if frame.task is not None:
            if self.st.pending.pop(frame.task.ref, None) is not None:
                self.commands.append(CancelTask(frame.task.ref))
            self.cancel_timer(frame.task.timeout_ref)
            self.cancel_timer(frame.task.heartbeat_ref)
            frame.task = None
        self.cancel_timer(frame.wait_ref)
        self.cancel_timer(frame.retry_ref)
        frame.wait_ref = frame.retry_ref = None

    def end_execution(
        self,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
        previous: int,
    ) -> None:
        for ref, pending in list(self.st.pending.items()):
            if pending.kind == "task":
                self.commands.append(CancelTask(ref))
            else:
                self.commands.append(CancelTimer(ref))
        self.st.pending.clear()
        self.st.frames.clear()
        self.queue.clear()
        if status == "SUCCEEDED":
            self.st.status = "SUCCEEDED"
            self.st.output = output
            self.emit(
                None,
                "ExecutionSucceeded",
                "executionSucceededEventDetails",
                _io("output", output),
                previous=previous,
            )
            return
        self.st.error, self.st.cause = error, cause
        details = _error_details(error, cause)
        if status == "FAILED":
            self.st.status = "FAILED"
            self.emit(
                None, "ExecutionFailed", "executionFailedEventDetails", details, previous=previous
            )
        elif status == "TIMED_OUT":
            self.st.status = "TIMED_OUT"
            self.emit(
                None,
                "ExecutionTimedOut",
                "executionTimedOutEventDetails",
                details,
                previous=previous,
            )
        else:
            self.st.status = "ABORTED"
            self.emit(
                None, "ExecutionAborted", "executionAbortedEventDetails", details, previous=previous
            )

    # events ----------------------------------------------------------------------------------

    def task_frame(self, ref: str) -> tuple[Frame, TaskWait] | None:
        pending = self.st.pending.get(ref)
        if pending is None or pending.kind != "task":
            return None
        frame = self.st.frames.get(pending.frame)
        if frame is None or frame.task is None or frame.task.ref != ref:
            return None
        return frame, frame.task

    def close_task(self, frame: Frame, task: TaskWait) -> None:
        self.st.pending.pop(task.ref, None)
        self.cancel_timer(task.timeout_ref)
        self.cancel_timer(task.heartbeat_ref)
        frame.task = None
        frame.phase = "enter"

    def on_task_started(self, event: TaskStarted) -> bool:
        found = self.task_frame(event.ref)
        if found is None or found[1].started:
            return False
        frame, task = found
        task.started = True
        resource_type, resource = resource_parts(task.resource)
        self.emit(
            frame,
            "TaskStarted",
            "taskStartedEventDetails",
            {"resourceType": resource_type, "resource": resource},
        )
        return True

    def on_task_succeeded(self, event: TaskSucceeded) -> bool:
        found = self.task_frame(event.ref)
        if found is None:
            return False
        frame, task = found
        sd = self.sdef(frame)
        self.close_task(frame, task)
        resource_type, resource = resource_parts(task.resource)
        if paths.payload_size(event.output) > paths.MAX_PAYLOAD_BYTES:
            err = StatesError(
                errors.DATA_LIMIT_EXCEEDED,
                f"The state/task '{resource}' returned a result with a size exceeding the "
                "maximum number of bytes service limit.",
                state_scoped=False,
            )
            self.emit(
                frame,
                "TaskFailed",
                "taskFailedEventDetails",
                {
                    "resourceType": resource_type,
                    "resource": resource,
                    "error": err.error,
                    "cause": err.cause,
                },
            )
            self.state_failed(frame, sd, err, from_task=True)
        else:
            self.emit(
                frame,
                "TaskSucceeded",
                "taskSucceededEventDetails",
                {
                    "resourceType": resource_type,
                    "resource": resource,
                    **_io("output", event.output),
                },
            )
            try:
                result = event.output
                if sd.result_selector is not None:
                    result = render(sd.result_selector, self.scope(result, self.context(frame)))
                self.finish_state(frame, sd, result)
            except StatesError as err:
                self.state_failed(frame, sd, err)
        self.queue.append(frame.id)
        return True

    def on_task_failed(self, event: TaskFailed) -> bool:
        found = self.task_frame(event.ref)
        if found is None:
            return False
        frame, task = found
        sd = self.sdef(frame)
        self.close_task(frame, task)
        resource_type, resource = resource_parts(task.resource)
        error = event.error or errors.TASK_FAILED
        self.emit(
            frame,
            "TaskFailed",
            "taskFailedEventDetails",
            {
                "resourceType": resource_type,
                "resource": resource,
                **_error_details(error, event.cause),
            },
        )
        self.state_failed(
            frame, sd, StatesError(error, event.cause, state_scoped=False), from_task=True
        )
        self.queue.append(frame.id)
        return True

    def on_heartbeat(self, event: TaskHeartbeat) -> bool:
        found = self.task_frame(event.ref)
        if found is None:
            return False
        frame, task = found
        if task.heartbeat_seconds is None:
            return True
        self.cancel_timer(task.heartbeat_ref)
        task.heartbeat_seq += 1
        task.heartbeat_ref = f"{task.ref}:heartbeat.{task.heartbeat_seq}"
        self.timer(task.heartbeat_ref, task.heartbeat_seconds, "heartbeat", frame.id)
        return True

    def on_timer(self, event: TimerFired) -> bool:
        pending = self.st.pending.pop(event.ref, None)
        if pending is None:
            return False
        if pending.kind == "execution_timeout":
            self.end_execution(
                "TIMED_OUT",
                error=errors.TIMEOUT,
                cause="The execution timed out: it ran longer than the state machine's "
                "TimeoutSeconds.",
                previous=self.st.next_event_id - 1,
            )
            return True
        frame = self.st.frames.get(pending.frame)
        if frame is None:
            return False
        sd = self.sdef(frame)
        if pending.kind == "wait" and frame.wait_ref == event.ref:
            try:
                self.complete_wait(frame, sd)
            except StatesError as err:
                self.state_failed(frame, sd, err)
        elif pending.kind == "retry" and frame.retry_ref == event.ref:
            frame.retry_ref = None
            frame.phase = "enter"
            self.run_state(frame, sd)
        elif pending.kind in ("timeout", "heartbeat") and frame.task is not None:
            task = frame.task
            if event.ref not in (task.timeout_ref, task.heartbeat_ref):
                return False
            if pending.kind == "timeout":
                task.timeout_ref = None
            else:
                task.heartbeat_ref = None
            self.commands.append(CancelTask(task.ref))
            self.close_task(frame, task)
            error = errors.TIMEOUT if pending.kind == "timeout" else errors.HEARTBEAT_TIMEOUT
            resource_type, resource = resource_parts(task.resource)
            self.emit(
                frame,
                "TaskTimedOut",
                "taskTimedOutEventDetails",
                {"resourceType": resource_type, "resource": resource, "error": error},
            )
            self.state_failed(
                frame, sd, StatesError(error, None, state_scoped=False), from_task=True
            )
        else:
            return False
        self.queue.append(frame.id)
        return True

    def on_stop(self, event: Stop) -> bool:
        self.end_execution(
            "ABORTED", error=event.error, cause=event.cause, previous=self.st.next_event_id - 1
        )
        return True


def _new_state(event: Start, now: datetime) -> ExecutionState:
    return ExecutionState(
        execution=ExecutionInfo(
            id=event.execution_id,
            name=event.execution_name,
            input=event.input,
            start_time=iso(now),
            role_arn=event.role_arn,
            state_machine_id=event.state_machine_id,
            state_machine_name=event.state_machine_name,
        )
    )


def advance(
    machine: CompiledMachine, state: ExecutionState | None, event: Event, env: Env
) -> Advance:
    """Apply one event; pure: ``state`` is not modified."""
    if isinstance(event, Start):
        if state is not None:
            return Advance(state, [], [], ignored=True)
        run = _Run(machine, _new_state(event, env.now), env)
        run.start(event)
        run.drain()
        return Advance(run.st, run.commands, run.history)
    if state is None:
        raise ValueError(f"{type(event).__name__} needs the execution state")
    if state.finished:
        return Advance(state, [], [], ignored=True)
    run = _Run(machine, state.fork(), env)
    handlers: dict[type[Any], Callable[[Any], bool]] = {
        TaskStarted: run.on_task_started,
        TaskSucceeded: run.on_task_succeeded,
        TaskFailed: run.on_task_failed,
        TaskHeartbeat: run.on_heartbeat,
        TimerFired: run.on_timer,
        Stop: run.on_stop,
    }
    if not handlers[type(event)](event):
        return Advance(state, [], [], ignored=True)
    run.drain()
    return Advance(run.st, run.commands, run.history)


# --- Synchronous driver ---------------------------------------------------------------------------


class TaskError(Exception):
    """Raised by a task runner to fail the task with an error name and a cause."""

    def __init__(self, error: str, cause: str | None = None):
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class _NoResponse:
    def __repr__(self) -> str:
        return "NO_RESPONSE"


#: A task runner returns this to leave the task unanswered (its timeout, if any, then fires).
NO_RESPONSE: Final = _NoResponse()

TaskRunner = Callable[[ScheduleTask], Any]


@dataclass(slots=True)
class Completion:
    status: str
    output: Any
    error: str | None
    cause: str | None
    state: ExecutionState
    history: list[HistoryEvent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # every event that was applied

    def history_dicts(self) -> list[dict[str, Any]]:
        return [h.to_dict() for h in self.history]


def run_to_completion(
    machine: CompiledMachine,
    input: Any,
    task_runner: TaskRunner,
    env: Env,
    *,
    start: Start | None = None,
    json_roundtrip: bool = False,
    max_events: int = 1_000_000,
) -> Completion:
    """Drive :func:`advance` synchronously: tasks through ``task_runner`` (its return value is
    the task's output; raising :class:`TaskError` fails it, any other exception fails it with
    the exception's class name), timers on an instant clock that jumps to the next ``fire_at``.

    ``start`` supplies the execution's identity (its ``input`` is replaced by ``input``).
    ``json_roundtrip`` serialises the state to JSON and back between every event, as a host that
    persists it would.
    """
    start_event = Start(input) if start is None else dataclasses.replace(start, input=input)
    clock = env.now
    events: deque[Event] = deque()
    timers: dict[str, tuple[datetime, int]] = {}
    seq = 0
    applied: list[Event] = [start_event]
    history: list[HistoryEvent] = []

    def handle(commands: list[Command]) -> None:
        nonlocal seq
        for command in commands:
            if isinstance(command, ScheduleTask):
                events.append(TaskStarted(command.ref))
                try:
                    output = task_runner(command)
                except TaskError as failure:
                    events.append(TaskFailed(command.ref, failure.error, failure.cause))
                    continue
                except Exception as exc:
                    events.append(TaskFailed(command.ref, type(exc).__name__, str(exc)))
                    continue
                if output is not NO_RESPONSE:
                    events.append(TaskSucceeded(command.ref, output))
            elif isinstance(command, StartTimer):
                seq += 1
                timers[command.ref] = (command.fire_at_datetime, seq)
            elif isinstance(command, CancelTimer):
                timers.pop(command.ref, None)

    result = advance(machine, None, start_event, env.at(clock))
    state = result.state
    history.extend(result.history)
    handle(result.commands)
    steps = 0
    while not state.finished:
        steps += 1
        if steps > max_events:
            raise RuntimeError(f"execution did not finish within {max_events} events")
        if events:
            event: Event = events.popleft()
        elif timers:
            ref = min(timers, key=lambda r: timers[r])
            fire_at, _ = timers.pop(ref)
            clock = max(clock, fire_at)
            event = TimerFired(ref)
        else:
            raise RuntimeError("the execution waits on a task that never answers")
        if json_roundtrip:
            state = ExecutionState.from_json(state.to_json())
            event_copy = json.loads(json.dumps(_event_json(event)))
            event = _event_from_json(event_copy)
        result = advance(machine, state, event, env.at(clock))
        applied.append(event)
        state = result.state
        history.extend(result.history)
        handle(result.commands)
    return Completion(state.status, state.output, state.error, state.cause, state, history, applied)


def _event_json(event: Event) -> dict[str, Any]:
    return event_to_dict(event)


def _event_from_json(data: dict[str, Any]) -> Event:
    return event_from_dict(data)


__all__ = [
    "EXECUTION_TIMEOUT_REF",
    "MISSING",
    "NO_RESPONSE",
    "CompiledMachine",
    "Completion",
    "StateDef",
    "TaskError",
    "TaskRunner",
    "Workflow",
    "advance",
    "compile_machine",
    "resource_parts",
    "run_to_completion",
]
