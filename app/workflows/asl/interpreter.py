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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from app.common.jsonpath import MISSING, JsonPath, parse
from app.workflows.asl import distributed as dist
from app.workflows.asl import errors, paths, query
from app.workflows.asl import varpath as variables_
from app.workflows.asl.choice import (
    NO_MATCH_CAUSE,
    ChoiceBranch,
    compile_choices,
    parse_timestamp,
)
from app.workflows.asl.choice import evaluate as evaluate_rule
from app.workflows.asl.errors import InvalidDefinition, StatesError
from app.workflows.asl.jsonata import bind_value
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
    MapRunUpdated,
    PendingRef,
    ScheduleTask,
    Start,
    StartTimer,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskWait,
    TimerFired,
    TimerPurpose,
    event_from_dict,
    event_to_dict,
    iso,
)
from app.workflows.asl.paths import Scope, TNode, compact, compile_template, render, select
from app.workflows.asl.query import QConst, QNode, QueryError, compile_query
from app.workflows.asl.retry import Catcher, Retrier, backoff_delay, find_catcher, find_retrier
from app.workflows.asl.validate import load_definition, validate_definition
from app.workflows.asl.varpath import EMPTY, Context, parse_path

EXECUTION_TIMEOUT_REF: Final = "$execution:timeout"
#: An EXPRESS Map Run's counts in its record (``ExecutionState.map_runs[arn]["counts"]``).
MAP_RUN_COUNTS: Final = (
    "items_started",
    "items_succeeded",
    "items_failed",
    "executions_started",
    "executions_succeeded",
    "executions_failed",
)
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
    # variables and JSONata
    jsonata: bool = False
    assign: TNode | QNode | None = None  # a JSONPath template or a JSONata template
    output: QNode | None = None
    arguments: QNode | None = None
    item_selector_q: QNode | None = None
    exprs: dict[str, QNode] = field(default_factory=dict)  # Seconds, Error, Items, ...
    conditions: tuple[QNode, ...] = ()  # JSONata Choice rules, in order
    choice_next: tuple[str, ...] = ()
    choice_assign: tuple[TNode | QNode | None, ...] = ()
    choice_output: tuple[QNode | None, ...] = ()
    catch_assign: tuple[TNode | QNode | None, ...] = ()
    catch_output: tuple[QNode | None, ...] = ()
    dist: DistSpec | None = None  # a distributed Map


#: A value given as a literal, a JSONata template (JSONata states) or a ``...Path``.
Valued = tuple[Any, "QNode | None", "JsonPath | None"]


@dataclass(frozen=True, slots=True)
class DistSpec:
    """A distributed Map's fields, compiled (see :mod:`~app.workflows.asl.distributed`)."""

    execution_type: str
    label: str | None
    definition: dict[str, Any]  # the ItemProcessor as a state machine of its own
    tolerated_count: Valued = (None, None, None)
    tolerated_percentage: Valued = (None, None, None)
    reader_resource: str | None = None
    reader_params: TNode | QNode | None = None
    reader_config: dict[str, Any] = field(default_factory=dict)
    max_items: Valued = (None, None, None)
    batching: bool = False
    max_items_per_batch: Valued = (None, None, None)
    max_bytes_per_batch: Valued = (None, None, None)
    batch_input: TNode | QNode | None = None
    has_batch_input: bool = False
    writer_resource: str | None = None
    writer_params: TNode | QNode | None = None
    writer_config: dict[str, Any] | None = None

    @property
    def transformation(self) -> str:
        """``WriterConfig.Transformation``: NONE when exporting to S3, COMPACT otherwise."""
        default = "NONE" if self.writer_resource is not None else "COMPACT"
        return str((self.writer_config or {}).get("Transformation", default))


def _valued(raw: dict[str, Any], key: str, jsonata: bool) -> Valued:
    literal = raw.get(key)
    if jsonata and key in raw and query.expression_text(literal) is not None:
        return None, compile_query(literal, key), None
    return literal, None, _path_field(raw, f"{key}Path", None)


def _params(block: dict[str, Any], jsonata: bool) -> TNode | QNode | None:
    if jsonata:
        return compile_query(block["Arguments"], "Arguments") if "Arguments" in block else None
    return compile_template(block["Parameters"]) if "Parameters" in block else None


def _compile_dist(raw: dict[str, Any], jsonata: bool, language: str) -> DistSpec:
    proc = raw["ItemProcessor"]
    definition = {k: v for k, v in proc.items() if k != "ProcessorConfig"}
    if language == "JSONata":
        definition["QueryLanguage"] = "JSONata"
    fields: dict[str, Any] = {
        "execution_type": proc["ProcessorConfig"].get("ExecutionType", "STANDARD"),
        "label": raw.get("Label"),
        "definition": definition,
        "tolerated_count": _valued(raw, "ToleratedFailureCount", jsonata),
        "tolerated_percentage": _valued(raw, "ToleratedFailurePercentage", jsonata),
    }
    reader = raw.get("ItemReader")
    if reader is not None:
        config = dict(reader.get("ReaderConfig", {}))
        fields["reader_resource"] = reader["Resource"]
        fields["reader_params"] = _params(reader, jsonata)
        fields["max_items"] = _valued(config, "MaxItems", jsonata)
        config.pop("MaxItems", None)
        config.pop("MaxItemsPath", None)
        fields["reader_config"] = config
    batcher = raw.get("ItemBatcher")
    if batcher is not None:
        fields["batching"] = True
        fields["max_items_per_batch"] = _valued(batcher, "MaxItemsPerBatch", jsonata)
        fields["max_bytes_per_batch"] = _valued(batcher, "MaxInputBytesPerBatch", jsonata)
        if "BatchInput" in batcher:
            fields["has_batch_input"] = True
            fields["batch_input"] = (
                compile_query(batcher["BatchInput"], "BatchInput")
                if jsonata
                else compile_template(batcher["BatchInput"])
            )
    writer = raw.get("ResultWriter")
    if writer is not None:
        fields["writer_resource"] = writer.get("Resource")
        fields["writer_params"] = _params(writer, jsonata)
        fields["writer_config"] = writer.get("WriterConfig")
    return DistSpec(**fields)


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

    def processor_definition(self, key: str) -> dict[str, Any]:
        """The ItemProcessor of the distributed Map whose processor workflow is ``key`` (the
        ``Processor`` of an :data:`~app.workflows.asl.distributed.ITERATION` task), as the
        definition of the Map Run's child executions."""
        for workflow in self.workflows.values():
            for sd in workflow.states.values():
                if sd.processor == key and sd.dist is not None:
                    return sd.dist.definition
        raise KeyError(key)


def _path_field(raw: dict[str, Any], name: str, default: str | None = "$") -> JsonPath | None:
    if name not in raw:
        return parse(default) if default is not None else None
    value = raw[name]
    return None if value is None else parse_path(value)


def _assign(raw: dict[str, Any], jsonata: bool) -> TNode | QNode | None:
    if "Assign" not in raw:
        return None
    return compile_query(raw["Assign"], "Assign") if jsonata else compile_template(raw["Assign"])


def _compile_jsonata(raw: dict[str, Any], fields: dict[str, Any]) -> None:
    kind = raw["Type"]
    fields["jsonata"] = True
    if "Output" in raw:
        fields["output"] = compile_query(raw["Output"], "Output")
    if "Arguments" in raw:
        fields["arguments"] = compile_query(raw["Arguments"], "Arguments")
    if kind == "Map" and "ItemSelector" in raw:
        fields["item_selector_q"] = compile_query(raw["ItemSelector"], "ItemSelector")
    exprs = {}
    for key in (
        "Seconds",
        "Timestamp",
        "Error",
        "Cause",
        "TimeoutSeconds",
        "HeartbeatSeconds",
        "Items",
        "MaxConcurrency",
    ):
        if key in raw:
            exprs[key] = compile_query(raw[key], key)
    fields["exprs"] = exprs
    if kind == "Choice":
        rules = raw["Choices"]
        fields["conditions"] = tuple(
            compile_query(r["Condition"], f"Choices[{i}]/Condition") for i, r in enumerate(rules)
        )
        fields["choice_next"] = tuple(r["Next"] for r in rules)
        fields["choice_assign"] = tuple(_assign(r, True) for r in rules)
        fields["choice_output"] = tuple(
            compile_query(r["Output"], "Output") if "Output" in r else None for r in rules
        )
        fields["default"] = raw.get("Default")
    catchers = raw.get("Catch", ())
    fields["catch_assign"] = tuple(_assign(c, True) for c in catchers)
    fields["catch_output"] = tuple(
        compile_query(c["Output"], "Output") if "Output" in c else None for c in catchers
    )


def _compile_state(
    name: str, raw: dict[str, Any], key: str, out: dict[str, Workflow], language: str
) -> StateDef:
    kind = raw["Type"]
    here = f"{key}/States/{name}"
    jsonata = raw.get("QueryLanguage", language) == "JSONata"
    fields: dict[str, Any] = {
        "name": name,
        "type": kind,
        "next": raw.get("Next"),
        "end": raw.get("End") is True or kind in ("Succeed", "Fail"),
        "input_path": _path_field(raw, "InputPath"),
        "output_path": _path_field(raw, "OutputPath"),
        "result_path": _path_field(raw, "ResultPath"),
        "retriers": tuple(Retrier.from_json(r) for r in raw.get("Retry", ())),
        "catchers": tuple(
            Catcher.from_json({k: v for k, v in c.items() if k != "ResultPath"} if jsonata else c)
            for c in raw.get("Catch", ())
        ),
        "assign": _assign(raw, jsonata),
    }
    if jsonata:
        _compile_jsonata(raw, fields)
    else:
        fields["catch_assign"] = tuple(_assign(c, False) for c in raw.get("Catch", ()))
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
        _compile_workflow(raw[proc_field], proc_key, out, language)
        fields["processor"] = proc_key
        config = raw[proc_field].get("ProcessorConfig") or {}
        if config.get("Mode") == "DISTRIBUTED":
            fields["dist"] = _compile_dist(raw, jsonata, language)
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
    if kind == "Choice" and not jsonata:
        fields["choices"] = compile_choices(raw["Choices"])
        fields["choice_next"] = tuple(r["Next"] for r in raw["Choices"])
        fields["choice_assign"] = tuple(_assign(r, False) for r in raw["Choices"])
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
            _compile_workflow(branch, branch_key, out, language)
            keys.append(branch_key)
        fields["branches"] = tuple(keys)
    return StateDef(**fields)


def _compile_workflow(
    raw: dict[str, Any], key: str, out: dict[str, Workflow], language: str
) -> None:
    states = {
        name: _compile_state(name, sd, key, out, language) for name, sd in raw["States"].items()
    }
    out[key] = Workflow(key, raw["StartAt"], states)


def compile_machine(definition: dict[str, Any] | str) -> CompiledMachine:
    """Validate and compile a definition; raises :class:`InvalidDefinition`."""
    raw = load_definition(definition)
    problems = [d for d in validate_definition(raw) if d.severity == "ERROR"]
    if problems:
        raise InvalidDefinition(problems)
    assert isinstance(raw, dict)
    workflows: dict[str, Workflow] = {}
    _compile_workflow(raw, "", workflows, raw.get("QueryLanguage", "JSONPath"))
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


_ACTIVITY_ARN: Final = re.compile(r"arn:[^:]+:states:[^:]*:[^:]*:activity:.+")


def is_activity(resource: str) -> bool:
    """An activity ARN: an outside worker polls ``GetActivityTask`` and answers with the token."""
    return _ACTIVITY_ARN.fullmatch(resource) is not None


def _io(key: str, value: Any) -> dict[str, Any]:
    return {key: compact(value), f"{key}Details": {"truncated": False}}


def _error_details(error: str | None, cause: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if error is not None:
        out["error"] = error
    if cause is not None:
        out["cause"] = cause
    return out


def _whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole JSON number (``3`` or ``3.0``), else None."""
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
    ) -> Context:
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
        return Context(ctx, self.variables(frame))

    # variables & JSONata ------------------------------------------------------------------------

    def variables(self, frame: Frame) -> Mapping[str, Any]:
        """The variables a state of ``frame`` sees: its own and every enclosing scope's."""
        scopes: list[dict[str, Any]] = []
        current: Frame | None = frame
        while current is not None:
            if current.variables:
                scopes.append(current.variables)
            current = None if current.parent is None else self.st.frames.get(current.parent)
        if not scopes:
            return EMPTY
        if len(scopes) == 1:
            return scopes[0]
        merged: dict[str, Any] = {}
        for scope in reversed(scopes):
            merged.update(scope)
        return merged

    @staticmethod
    def bindings(ctx: Context, state_input: Any, **extra: Any) -> dict[str, Any]:
        """``$states`` (input, context, result / errorOutput) and the variables."""
        states = {"input": state_input, "context": ctx, **extra}
        out = {name: bind_value(value) for name, value in ctx.variables.items()}
        out["states"] = states
        return out

    def q(self, node: QNode, bindings: dict[str, Any]) -> Any:
        return query.evaluate(node, bindings, self.env)

    def evaluate_assign(
        self,
        node: TNode | QNode | None,
        jsonata: bool,
        data: Any,
        ctx: Context,
        bindings: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """An ``Assign`` block's values (all read the variables as they were before the
        state: the assignment is parallel)."""
        if node is None:
            return None
        if jsonata:
            assert bindings is not None
            values = self.q(node, bindings)  # type: ignore[arg-type]
        else:
            values = render(node, self.scope(data, ctx))  # type: ignore[arg-type]
        assert isinstance(values, dict)
        return values

    def commit_assign(self, frame: Frame, values: dict[str, Any]) -> None:
        """Store the variables in ``frame``'s scope, checking the scope rule and the quotas."""
        outer: Mapping[str, Any] = EMPTY
        if frame.parent is not None:
            outer = self.variables(self.st.frames[frame.parent])
        total = 0
        for name, value in values.items():
            if name in outer:
                raise errors.runtime_error(
                    f"Cannot bind value '{compact(value)}' to variable '{name}' as it belongs "
                    "to an outer scope."
                )
            size = paths.payload_size(value)
            total += size
            if size > variables_.MAX_VARIABLE_BYTES:
                raise StatesError(
                    errors.DATA_LIMIT_EXCEEDED,
                    f"The variable '{name}' has a size exceeding the maximum number of bytes "
                    "service limit.",
                )
        if total > variables_.MAX_ASSIGN_BYTES:
            raise StatesError(
                errors.DATA_LIMIT_EXCEEDED,
                "The variables assigned in the state have a combined size exceeding the maximum "
                "number of bytes service limit.",
            )
        stored = total + sum(
            paths.payload_size(value)
            for f in self.st.frames.values()
            for name, value in f.variables.items()
            if not (f is frame and name in values)
        )
        if stored > variables_.MAX_TOTAL_BYTES:
            raise StatesError(
                errors.DATA_LIMIT_EXCEEDED,
                "The variables of the execution have a combined size exceeding the maximum "
                "number of bytes service limit.",
            )
        frame.variables.update(values)

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

    def jsonata_exit(
        self,
        frame: Frame,
        sd: StateDef,
        target: str | None,
        ctx: Context,
        bindings: dict[str, Any],
        default: Any,
        *,
        output: QNode | None = None,
        assign: TNode | QNode | None = None,
        use_state_fields: bool = True,
    ) -> None:
        """Leave a JSONata state: ``Output`` (else ``default``) and ``Assign``, both evaluated
        with the variables as they were before the state."""
        if use_state_fields:
            output, assign = sd.output, sd.assign
        assigned = self.evaluate_assign(assign, True, None, ctx, bindings)
        value = default if output is None else self.q(output, bindings)
        self.exit_state(frame, sd, value, target, ctx, assigned)

    def run_pass(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            self.jsonata_exit(frame, sd, sd.next, ctx, bindings, frame.input)
            return
        effective = select(sd.input_path, frame.input, ctx)
        if sd.parameters is not None:
            effective = render(sd.parameters, self.scope(effective, ctx))
        self.finish_state(frame, sd, sd.result if sd.has_result else effective)

    def run_succeed(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            self.jsonata_exit(frame, sd, None, ctx, bindings, frame.input)
            return
        self.exit_state(frame, sd, select(sd.input_path, frame.input, ctx), None, ctx)

    def run_choice(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            for i, condition in enumerate(sd.conditions):
                matched = self.q(condition, bindings)
                if not isinstance(matched, bool):
                    raise query.unexpected_type(condition, "boolean", matched, compact(matched))
                if matched:
                    self.jsonata_exit(
                        frame,
                        sd,
                        sd.choice_next[i],
                        ctx,
                        bindings,
                        frame.input,
                        output=sd.choice_output[i],
                        assign=sd.choice_assign[i],
                        use_state_fields=False,
                    )
                    return
            if sd.default is None:
                raise StatesError(errors.NO_CHOICE_MATCHED, NO_MATCH_CAUSE)
            self.jsonata_exit(frame, sd, sd.default, ctx, bindings, frame.input)
            return
        effective = select(sd.input_path, frame.input, ctx)
        target, assign = sd.default, sd.assign
        for i, branch in enumerate(sd.choices):
            if evaluate_rule(branch.rule, effective, ctx):
                target, assign = branch.next, sd.choice_assign[i]
                break
        else:
            if target is None:
                raise StatesError(errors.NO_CHOICE_MATCHED, NO_MATCH_CAUSE)
        assigned = self.evaluate_assign(assign, False, effective, ctx)
        self.exit_state(frame, sd, effective, target, ctx, assigned)

    def run_wait(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.jsonata:
            frame.effective = frame.input
            bindings = self.bindings(ctx, frame.input)
            if "Seconds" in sd.exprs:
                seconds_value = self.q_int(sd.exprs["Seconds"], bindings, minimum=0)
                fire_at = self.env.now + timedelta(seconds=seconds_value)
            else:
                node = sd.exprs["Timestamp"]
                value = self.q(node, bindings)
                parsed_at = parse_timestamp(value)
                if parsed_at is None:
                    raise query.unexpected_type(node, "timestamp", value, compact(value))
                fire_at = parsed_at
            self.wait_until(frame, sd, fire_at)
            return
        effective = select(sd.input_path, frame.input, ctx)
        frame.effective = effective
        if sd.seconds is not None or sd.seconds_path is not None:
            seconds: Any = sd.seconds
            if sd.seconds_path is not None:
                seconds = _whole_number(paths.read_path(sd.seconds_path, effective, ctx))
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
        self.wait_until(frame, sd, fire_at)

    def wait_until(self, frame: Frame, sd: StateDef, fire_at: datetime) -> None:
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
        ctx = self.context(frame)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            self.jsonata_exit(frame, sd, sd.next, ctx, bindings, frame.input)
            return
        assigned = self.evaluate_assign(sd.assign, False, frame.effective, ctx)
        self.exit_state(frame, sd, frame.effective, sd.next, ctx, assigned)

    def run_fail(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            texts: list[str | None] = []
            for key in ("Error", "Cause"):
                node = sd.exprs.get(key)
                value = None if node is None else self.q(node, bindings)
                if value is not None and not isinstance(value, str):
                    assert node is not None
                    raise query.unexpected_type(node, "string", value, compact(value))
                texts.append(value)
            self.frame_failed(frame, texts[0], texts[1])
            return
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
        callback = sd.resource.endswith(".waitForTaskToken")
        activity = is_activity(sd.resource)
        token = self.env.uuid() if callback or activity else None
        ctx = self.context(frame, token=token if callback else None)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            parameters = frame.input
            if sd.arguments is not None:
                parameters = self.q(sd.arguments, bindings)
            timeout = self.jsonata_seconds(sd, "TimeoutSeconds", bindings)
            heartbeat = self.jsonata_seconds(sd, "HeartbeatSeconds", bindings)
        else:
            effective = select(sd.input_path, frame.input, ctx)
            parameters = effective
            if sd.parameters is not None:
                parameters = render(sd.parameters, self.scope(effective, ctx))
            timeout = self.seconds_field(
                sd.timeout_seconds, sd.timeout_seconds_path, effective, ctx
            )
            heartbeat = self.seconds_field(
                sd.heartbeat_seconds, sd.heartbeat_seconds_path, effective, ctx
            )
        paths.check_payload_size(parameters, sd.name)
        ref = f"{self.prefix(frame)}{sd.name}@{frame.visit}.{frame.attempt}"
        task = TaskWait(ref, sd.resource, token, heartbeat_seconds=heartbeat)
        frame.task = task
        frame.phase = "task"
        self.st.pending[ref] = PendingRef("task", frame.id)
        self.commands.append(
            ScheduleTask(ref, sd.name, sd.resource, parameters, timeout, heartbeat, token)
        )
        details: dict[str, Any]
        if activity:
            details = {"resource": sd.resource, **_io("input", parameters)}
        else:
            resource_type, resource = resource_parts(sd.resource)
            details = {
                "resourceType": resource_type,
                "resource": resource,
                "parameters": compact(parameters),
            }
        if timeout is not None:
            details["timeoutInSeconds"] = timeout
        if heartbeat is not None:
            details["heartbeatInSeconds"] = heartbeat
        if activity:
            self.emit(frame, "ActivityScheduled", "activityScheduledEventDetails", details)
        else:
            self.emit(frame, "TaskScheduled", "taskScheduledEventDetails", details)
        if timeout is not None:
            task.timeout_ref = f"{ref}:timeout"
            self.timer(task.timeout_ref, timeout, "timeout", frame.id)
        if heartbeat is not None:
            task.heartbeat_ref = f"{ref}:heartbeat.0"
            self.timer(task.heartbeat_ref, heartbeat, "heartbeat", frame.id)

    def jsonata_seconds(self, sd: StateDef, key: str, bindings: dict[str, Any]) -> int | None:
        node = sd.exprs.get(key)
        return None if node is None else self.q_int(node, bindings, minimum=1)

    def q_int(self, node: QNode, bindings: dict[str, Any], minimum: int) -> int:
        """A JSONata field that must give a whole number of at least ``minimum`` (Wait
        ``Seconds``, Task ``TimeoutSeconds``, Map ``MaxConcurrency``), else
        ``States.QueryEvaluationError``."""
        value = self.q(node, bindings)
        number = _whole_number(value)
        if number is None or number < minimum:
            raise query.unexpected_type(node, "integer", value, compact(value))
        return number

    @staticmethod
    def seconds_field(
        literal: int | None, path: JsonPath | None, data: Any, ctx: dict[str, Any]
    ) -> int | None:
        if path is None:
            return literal
        value = _whole_number(paths.read_path(path, data, ctx))
        if value is None or value <= 0:
            raise errors.runtime_error(
                f"Invalid path '{path.text}': The path does not reference a positive integer value."
            )
        return value

    def run_parallel(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.jsonata:
            effective = frame.input
            if sd.arguments is not None:
                effective = self.q(sd.arguments, self.bindings(ctx, frame.input))
        else:
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

    def map_jsonata(self, frame: Frame, sd: StateDef, ctx: Context) -> tuple[list[Any], int]:
        bindings = self.bindings(ctx, frame.input)
        items: Any = frame.input
        node = sd.exprs.get("Items")
        if node is not None:
            items = self.q(node, bindings)
        if not isinstance(items, list):
            raise query.unexpected_type(
                node if node is not None else QConst(items), "array", items, compact(items)
            )
        limit = 0
        if "MaxConcurrency" in sd.exprs:
            limit = self.q_int(sd.exprs["MaxConcurrency"], bindings, minimum=0)
        if sd.item_selector_q is not None:
            selector = sd.item_selector_q
            items = [
                self.q(selector, self.bindings(self.context(frame, item=(i, v)), frame.input))
                for i, v in enumerate(items)
            ]
        return items, limit

    def run_map(self, frame: Frame, sd: StateDef) -> None:
        ctx = self.context(frame)
        if sd.dist is not None:
            self.run_distributed(frame, sd, sd.dist, ctx)
            return
        if sd.jsonata:
            items, limit = self.map_jsonata(frame, sd, ctx)
            self.start_map(frame, sd, items, items, limit)
            return
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
            value = _whole_number(paths.read_path(sd.max_concurrency_path, effective, ctx))
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
        self.start_map(frame, sd, items, inputs, limit)

    def start_map(
        self, frame: Frame, sd: StateDef, items: list[Any], inputs: list[Any], limit: int
    ) -> None:
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

    # distributed Map: a Map Run of child executions -------------------------------------------

    def valued(
        self,
        value: Valued,
        data: Any,
        ctx: Context,
        bindings: dict[str, Any] | None,
        name: str,
        *,
        integer: bool = True,
    ) -> Any:
        """A literal, JSONata-template or ``...Path`` field's value: a non-negative integer
        (or number), or None when the field is absent."""
        literal, node, path = value
        if node is not None:
            assert bindings is not None
            result = self.q(node, bindings)
            number = _whole_number(result) if integer else result
            if (
                number is None
                or isinstance(number, bool)
                or not isinstance(number, (int, float))
                or number < 0
            ):
                raise query.unexpected_type(
                    node, "integer" if integer else "number", result, compact(result)
                )
            return number
        if path is not None:
            result = paths.read_path(path, data, ctx)
            number = _whole_number(result) if integer else result
            if (
                number is None
                or isinstance(number, bool)
                or not isinstance(number, (int, float))
                or number < 0
            ):
                kind = "a non-negative integer" if integer else "a non-negative number"
                raise errors.runtime_error(
                    f"Invalid path '{path.text}': The {name}Path field does not reference "
                    f"{kind} value."
                )
            return number
        return literal

    def run_distributed(self, frame: Frame, sd: StateDef, spec: DistSpec, ctx: Context) -> None:
        """Enter a distributed Map: resolve its fields, start the Map Run, then read the items
        (a host task) or take them from the input."""
        bindings: dict[str, Any] | None = None
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input)
            effective = frame.input
            items_node = sd.exprs.get("Items")
            items: Any = frame.input if items_node is None else self.q(items_node, bindings)
            limit = 0
            if "MaxConcurrency" in sd.exprs:
                limit = self.valued(
                    (None, sd.exprs["MaxConcurrency"], None), None, ctx, bindings, "MaxConcurrency"
                )
        else:
            effective = select(sd.input_path, frame.input, ctx)
            items = None
            if spec.reader_resource is None:
                items = select(sd.items_path, effective, ctx)
            limit = self.valued(
                (sd.max_concurrency, None, sd.max_concurrency_path),
                effective,
                ctx,
                None,
                "MaxConcurrency",
            )
        count = self.valued(spec.tolerated_count, effective, ctx, bindings, "ToleratedFailureCount")
        percentage = self.valued(
            spec.tolerated_percentage,
            effective,
            ctx,
            bindings,
            "ToleratedFailurePercentage",
            integer=False,
        )
        if percentage is not None and percentage > 100:
            raise errors.runtime_error(
                f"The ToleratedFailurePercentage {compact(percentage)} is not between 0 and 100."
            )
        reader_params: Any = None
        if spec.reader_resource is not None:
            reader_params = self.dist_params(spec.reader_params, effective, ctx, bindings)
            max_items = self.valued(spec.max_items, effective, ctx, bindings, "MaxItems")
            reader_params = {
                "Resource": spec.reader_resource,
                "Parameters": reader_params,
                "ReaderConfig": {
                    **spec.reader_config,
                    **({"MaxItems": max_items} if max_items else {}),
                },
            }
        elif not isinstance(items, list):
            if sd.jsonata:
                node = sd.exprs.get("Items")
                raise query.unexpected_type(
                    node if node is not None else QConst(items), "array", items, compact(items)
                )
            where = sd.items_path.text if sd.items_path is not None else "$"
            raise errors.runtime_error(
                f"Invalid path '{where}': The ItemsPath field does not reference a JSON array: "
                f"{compact(items)}"
            )
        ex = self.st.execution
        run_arn, machine_arn = dist.map_run_arns(
            ex.state_machine_id, spec.label or sd.name, self.env.uuid()
        )
        started = self.emit(
            frame,
            "MapStateStarted",
            "mapStateStartedEventDetails",
            {"length": 0 if items is None else len(items)},
        )
        self.emit(frame, "MapRunStarted", "mapRunStartedEventDetails", {"mapRunArn": run_arn})
        frame.effective = effective
        frame.children = ChildRun(
            "Map",
            0,
            [],
            int(limit or 0),
            started_event_id=started,
            map_run_arn=run_arn,
            tolerated_count=None if count is None else int(count),
            tolerated_percentage=None if percentage is None else float(percentage),
            keep_results=spec.writer_resource is None,
        )
        frame.phase = "children"
        self.st.map_runs[run_arn] = {
            "status": "RUNNING",
            "machine_arn": machine_arn,
            "execution_type": spec.execution_type,
            "max_concurrency": int(limit or 0),
            "tolerated_count": None if count is None else int(count),
            "tolerated_percentage": None if percentage is None else float(percentage),
            "items": 0,
            "children": 0,
        }
        if reader_params is not None:
            reader_params["MapRunArn"] = run_arn
            self.host_task(frame, sd, "#reader", dist.READER, reader_params)
            return
        assert isinstance(items, list)
        self.begin_run(frame, sd, spec, items)

    def dist_params(
        self,
        node: TNode | QNode | None,
        effective: Any,
        ctx: Context,
        bindings: dict[str, Any] | None,
    ) -> Any:
        if node is None:
            return {}
        if bindings is not None:
            return self.q(node, bindings)  # type: ignore[arg-type]
        return render(node, self.scope(effective, ctx))  # type: ignore[arg-type]

    def host_task(
        self, frame: Frame, sd: StateDef, suffix: str, resource: str, params: Any
    ) -> None:
        """A task of the Map Run itself (read the items, write the results): no Task history."""
        ref = f"{self.prefix(frame)}{sd.name}@{frame.visit}.{frame.attempt}{suffix}"
        frame.task = TaskWait(ref, resource)
        self.st.pending[ref] = PendingRef("task", frame.id)
        self.commands.append(ScheduleTask(ref, sd.name, resource, params, None, None))

    def begin_run(self, frame: Frame, sd: StateDef, spec: DistSpec, items: list[Any]) -> None:
        """The items are known: ItemSelector, ItemBatcher, then the first children."""
        run = frame.children
        assert run is not None
        try:
            if len(items) > dist.MAX_ITEMS:
                raise StatesError(
                    errors.ITEM_READER_FAILED,
                    f"The Map Run has {len(items)} items; smokehouse runs at most "
                    f"{dist.MAX_ITEMS} items in one Map Run.",
                    state_scoped=False,
                )
            inputs = items
            if sd.jsonata and sd.item_selector_q is not None:
                selector_q = sd.item_selector_q
                inputs = [
                    self.q(selector_q, self.bindings(self.context(frame, item=(i, v)), frame.input))
                    for i, v in enumerate(items)
                ]
            elif sd.item_selector is not None:
                selector = sd.item_selector
                inputs = [
                    render(selector, self.scope(frame.effective, self.context(frame, item=(i, v))))
                    for i, v in enumerate(items)
                ]
            sizes: list[int] = []
            if spec.batching:
                ctx = self.context(frame)
                bindings = self.bindings(ctx, frame.input) if sd.jsonata else None
                data = frame.effective
                batching = dist.Batching(
                    int(
                        self.valued(
                            spec.max_items_per_batch, data, ctx, bindings, "MaxItemsPerBatch"
                        )
                        or 0
                    ),
                    int(
                        self.valued(
                            spec.max_bytes_per_batch, data, ctx, bindings, "MaxInputBytesPerBatch"
                        )
                        or 0
                    ),
                    self.dist_params(spec.batch_input, data, ctx, bindings)
                    if spec.has_batch_input
                    else None,
                    spec.has_batch_input,
                )
                inputs = dist.make_batches(inputs, batching)
                sizes = [len(batch["Items"]) for batch in inputs]
        except StatesError as err:
            self.fail_run(frame, sd, err.error, self.prefixed(frame, sd, err))
            return
        run.inputs = list(inputs)
        run.total = len(inputs)
        run.items = len(items)
        run.batch_sizes = sizes
        run.results = [None] * run.total if run.keep_results else []
        record = self.st.map_runs[run.map_run_arn or ""]
        record["items"], record["children"] = run.items, run.total
        if run.total == 0:
            self.complete_run(frame, sd, spec)
            return
        self.fill_run(frame, sd, spec)

    def fill_run(self, frame: Frame, sd: StateDef, spec: DistSpec) -> None:
        """Start children up to MaxConcurrency (0: AWS's 10,000)."""
        run = frame.children
        assert run is not None
        assert run.map_run_arn is not None
        limit = run.max_concurrency or dist.DEFAULT_MAX_CONCURRENCY
        _, machine_arn = dist.map_run_arns(
            self.st.execution.state_machine_id, spec.label or sd.name, ""
        )
        while run.started < run.total and len(run.running) < limit:
            index = run.started
            ref = f"{self.prefix(frame)}{sd.name}@{frame.visit}.{frame.attempt}[{index}]"
            params = {
                "MapRunArn": run.map_run_arn,
                "StateMachineArn": machine_arn,
                "ExecutionType": spec.execution_type,
                "Processor": sd.processor,
                "Index": index,
                "ItemCount": run.batch_sizes[index] if run.batch_sizes else 1,
                "Input": run.inputs[index],
            }
            run.inputs[index] = None  # the child execution holds it now
            self.st.pending[ref] = PendingRef("task", frame.id)
            self.commands.append(ScheduleTask(ref, sd.name, dist.ITERATION, params, None, None))
            run.running.append(ref)
            run.started += 1
            self.count_child(run, "started", params["ItemCount"])

    def child_result(self, spec: DistSpec, answer: Any) -> Any:
        """A succeeded child's entry in the results: its output (COMPACT, FLATTEN) or its whole
        description (NONE)."""
        if spec.transformation == "NONE" or not isinstance(answer, dict):
            return answer
        output = answer.get("Output")
        if isinstance(output, str):
            try:
                return json.loads(output)
            except ValueError:
                return output
        return output

    def count_child(self, run: ChildRun, outcome: str, items: int) -> None:
        """A child started, succeeded or failed, in its Map Run's record: the counts of an
        EXPRESS run, whose children the host does not store (a STANDARD run's come from its
        children's own executions)."""
        record = self.st.map_runs[run.map_run_arn or ""]
        if record.get("execution_type") != "EXPRESS":
            return
        counts = dict(record.get("counts") or dict.fromkeys(MAP_RUN_COUNTS, 0))
        counts[f"items_{outcome}"] += items
        counts[f"executions_{outcome}"] += 1
        record["counts"] = counts

    def on_iteration(
        self, frame: Frame, ref: str, answer: Any, error: str | None, cause: str | None
    ) -> None:
        """A child execution of the Map Run ended (``error`` None: it succeeded)."""
        run = frame.children
        sd = self.sdef(frame)
        assert run is not None
        assert sd.dist is not None
        self.st.pending.pop(ref, None)
        run.running.remove(ref)
        run.done += 1
        index = int(ref[ref.rindex("[") + 1 : -1])
        weight = run.batch_sizes[index] if run.batch_sizes else 1
        self.count_child(run, "succeeded" if error is None else "failed", weight)
        if error is None:
            run.succeeded += weight
            if run.keep_results:
                run.results[index] = self.child_result(sd.dist, answer)
        else:
            run.failed += weight
            if run.keep_results:
                described: Any = None
                if cause is not None:
                    try:
                        described = json.loads(cause)
                    except ValueError:
                        described = None
                if not isinstance(described, dict):
                    described = {"Error": error, **({"Cause": cause} if cause else {})}
                run.results[index] = described
            tolerance = dist.Tolerance(run.tolerated_count, run.tolerated_percentage)
            if dist.exceeds(tolerance, run.failed, run.items or run.total):
                self.fail_run(
                    frame, sd, errors.EXCEED_TOLERATED_FAILURE_THRESHOLD, dist.exceeded_cause()
                )
                return
        self.fill_run(frame, sd, sd.dist)
        if run.done == run.total:
            self.complete_run(frame, sd, sd.dist)

    def complete_run(self, frame: Frame, sd: StateDef, spec: DistSpec) -> None:
        """Every child ended within the thresholds: export the results, or end the run."""
        run = frame.children
        assert run is not None
        if spec.writer_resource is not None:
            try:
                ctx = self.context(frame)
                bindings = self.bindings(ctx, frame.input) if sd.jsonata else None
                params = self.dist_params(spec.writer_params, frame.effective, ctx, bindings)
            except StatesError as err:
                self.fail_run(frame, sd, err.error, self.prefixed(frame, sd, err))
                return
            config = {"Transformation": spec.transformation, "OutputType": "JSON"}
            config.update(spec.writer_config or {})
            self.host_task(
                frame,
                sd,
                "#writer",
                dist.WRITER,
                {
                    "Resource": spec.writer_resource,
                    "Parameters": params,
                    "WriterConfig": config,
                    "MapRunArn": run.map_run_arn,
                },
            )
            return
        results = run.results
        if spec.transformation == "FLATTEN":
            flat: list[Any] = []
            for entry in results:
                flat.extend(entry if isinstance(entry, list) else [entry])
            results = flat
        self.end_run(frame, sd, results)

    def run_status(self, frame: Frame, status: str) -> None:
        run = frame.children
        if run is not None and run.map_run_arn in self.st.map_runs:
            self.st.map_runs[run.map_run_arn]["status"] = status

    def end_run(self, frame: Frame, sd: StateDef, result: Any) -> None:
        self.run_status(frame, "SUCCEEDED")
        self.emit(frame, "MapRunSucceeded")
        self.children_done(frame, sd, result)

    def fail_run(self, frame: Frame, sd: StateDef, error: str, cause: str | None) -> None:
        """The Map Run failed (threshold, reader, writer): stop its children, then fail the
        Map state (Retry and Catch apply)."""
        self.stop_run(frame)
        self.run_status(frame, "FAILED")
        self.emit(frame, "MapRunFailed", "mapRunFailedEventDetails", _error_details(error, cause))
        frame.children = None
        frame.phase = "enter"
        self.state_failed(frame, sd, StatesError(error, cause, state_scoped=False))
        self.queue.append(frame.id)

    def stop_run(self, frame: Frame) -> None:
        """Cancel the Map Run's running children and its reader/writer task."""
        run = frame.children
        if run is not None:
            for ref in run.running:
                if self.st.pending.pop(ref, None) is not None:
                    self.commands.append(CancelTask(ref))
            run.running.clear()
        self.release(frame)

    def on_host_task(self, frame: Frame, task: TaskWait, event: TaskSucceeded | TaskFailed) -> None:
        """The Map Run's reader or writer answered."""
        sd = self.sdef(frame)
        assert sd.dist is not None
        self.st.pending.pop(task.ref, None)
        frame.task = None
        reader = task.resource == dist.READER
        if isinstance(event, TaskFailed):
            default = errors.ITEM_READER_FAILED if reader else errors.RESULT_WRITER_FAILED
            self.fail_run(frame, sd, event.error or default, event.cause)
        elif reader:
            if not isinstance(event.output, list):
                self.fail_run(
                    frame,
                    sd,
                    errors.ITEM_READER_FAILED,
                    f"The ItemReader did not return a JSON array: {compact(event.output)[:200]}",
                )
            else:
                self.begin_run(frame, sd, sd.dist, event.output)
        else:
            self.end_run(frame, sd, event.output)
        self.queue.append(frame.id)

    def map_run_frame(self, ref: str) -> Frame | None:
        """The distributed Map frame a child-execution ref belongs to."""
        pending = self.st.pending.get(ref)
        if pending is None or pending.kind != "task":
            return None
        frame = self.st.frames.get(pending.frame)
        run = None if frame is None else frame.children
        if run is None or run.map_run_arn is None or ref not in run.running:
            return None
        return frame

    def on_map_run_updated(self, event: MapRunUpdated) -> bool:
        """``UpdateMapRun``: a new MaxConcurrency or thresholds, applied at once."""
        frame = next(
            (
                f
                for f in self.st.frames.values()
                if f.children is not None and f.children.map_run_arn == event.map_run_arn
            ),
            None,
        )
        if frame is None or frame.children is None:
            return False
        run = frame.children
        if event.max_concurrency is not None:
            run.max_concurrency = event.max_concurrency
        if event.tolerated_failure_count is not None:
            run.tolerated_count = event.tolerated_failure_count
        if event.tolerated_failure_percentage is not None:
            run.tolerated_percentage = event.tolerated_failure_percentage
        self.st.map_runs[event.map_run_arn].update(
            max_concurrency=run.max_concurrency,
            tolerated_count=run.tolerated_count,
            tolerated_percentage=run.tolerated_percentage,
        )
        sd = self.sdef(frame)
        assert sd.dist is not None
        if frame.task is None and run.total:
            tolerance = dist.Tolerance(run.tolerated_count, run.tolerated_percentage)
            if dist.exceeds(tolerance, run.failed, run.items or run.total):
                self.fail_run(
                    frame, sd, errors.EXCEED_TOLERATED_FAILURE_THRESHOLD, dist.exceeded_cause()
                )
                return True
            self.fill_run(frame, sd, sd.dist)
        return True

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

    def finish_state(
        self, frame: Frame, sd: StateDef, result: Any, raw_result: Any = MISSING
    ) -> None:
        """Assign, ResultPath, OutputPath (JSONata: Assign and Output), the size check, the
        Exited event and the transition. JSONPath ``Assign`` reads the result before
        ``ResultSelector`` (``raw_result``), as Step Functions does."""
        ctx = self.context(frame)
        if sd.jsonata:
            bindings = self.bindings(ctx, frame.input, result=result)
            self.jsonata_exit(frame, sd, sd.next, ctx, bindings, result)
            return
        assign_data = result if raw_result is MISSING else raw_result
        assigned = self.evaluate_assign(sd.assign, False, assign_data, ctx)
        merged = paths.apply_result_path(sd.result_path, frame.input, result)
        self.exit_state(frame, sd, merged, sd.next, ctx, assigned)

    def exit_state(
        self,
        frame: Frame,
        sd: StateDef,
        value: Any,
        target: str | None,
        ctx: dict[str, Any],
        assigned: dict[str, Any] | None = None,
    ) -> None:
        """OutputPath (the variables as they were before the state), the size check, then
        the assignment, the Exited event and the transition."""
        output = value if sd.jsonata else select(sd.output_path, value, ctx)
        paths.check_payload_size(output, sd.name)
        details: dict[str, Any] = {"name": sd.name, **_io("output", output)}
        if assigned is not None:
            self.commit_assign(frame, assigned)
            details["assignedVariables"] = {k: compact(v) for k, v in assigned.items()}
            details["assignedVariablesDetails"] = {"truncated": False}
        self.emit(frame, f"{sd.type}StateExited", "stateExitedEventDetails", details)
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
        if isinstance(err, QueryError):
            self.emit(
                None,
                "EvaluationFailed",
                "evaluationFailedEventDetails",
                {
                    "error": err.error,
                    "cause": cause,
                    "location": err.location,
                    "state": sd.name,
                },
                previous=frame.last_event_id,
            )
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
            self.catch(frame, sd, sd.catchers.index(catcher), err.error, cause)
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

    def catch(self, frame: Frame, sd: StateDef, index: int, error: str, cause: str | None) -> None:
        """Leave through catcher ``index``: its ``ResultPath`` (JSONata: ``Output``, default
        the error output) and its ``Assign`` (``$`` / ``$states.errorOutput``: the error
        output)."""
        catcher = sd.catchers[index]
        error_output: dict[str, Any] = {"Error": error}
        if cause is not None:
            error_output["Cause"] = cause
        ctx = self.context(frame)
        assign = sd.catch_assign[index] if sd.catch_assign else None
        try:
            if sd.jsonata:
                bindings = self.bindings(ctx, frame.input, errorOutput=error_output)
                assigned = self.evaluate_assign(assign, True, None, ctx, bindings)
                node = sd.catch_output[index] if sd.catch_output else None
                output = error_output if node is None else self.q(node, bindings)
            else:
                assigned = self.evaluate_assign(assign, False, error_output, ctx)
                output = paths.apply_result_path(catcher.result_path, frame.input, error_output)
            details: dict[str, Any] = {"name": sd.name, **_io("output", output)}
            if assigned is not None:
                self.commit_assign(frame, assigned)
                details["assignedVariables"] = {k: compact(v) for k, v in assigned.items()}
                details["assignedVariablesDetails"] = {"truncated": False}
        except StatesError as err:
            self.frame_failed(frame, err.error, self.prefixed(frame, sd, err))
            return
        self.emit(frame, f"{sd.type}StateExited", "stateExitedEventDetails", details)
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

    def children_done(self, parent: Frame, sd: StateDef, result: Any = MISSING) -> None:
        run = parent.children
        assert run is not None
        results = run.results if result is MISSING else result
        parent.children = None
        parent.phase = "enter"
        self.emit(None, f"{sd.type}StateSucceeded", previous=parent.last_event_id)
        try:
            result = results
            if sd.result_selector is not None:
                result = render(sd.result_selector, self.scope(results, self.context(parent)))
            self.finish_state(parent, sd, result, results)
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
        if frame.children is not None and frame.children.map_run_arn is not None:
            self.stop_run(frame)
            self.run_status(frame, "ABORTED")
            self.emit(frame, "MapRunAborted")
        elif frame.children is not None:
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
        if status != "SUCCEEDED":
            for frame in self.st.frames.values():
                if frame.children is not None and frame.children.map_run_arn is not None:
                    self.run_status(frame, "ABORTED")
                    previous = self.emit(frame, "MapRunAborted", previous=previous)
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
        if found is None or found[1].started or found[1].resource in dist.INTERNAL_RESOURCES:
            return False  # a Map Run's own tasks have no Task history
        frame, task = found
        task.started = True
        if is_activity(task.resource):
            worker = {} if event.worker_name is None else {"workerName": event.worker_name}
            self.emit(frame, "ActivityStarted", "activityStartedEventDetails", worker)
            return True
        resource_type, resource = resource_parts(task.resource)
        self.emit(
            frame,
            "TaskStarted",
            "taskStartedEventDetails",
            {"resourceType": resource_type, "resource": resource},
        )
        return True

    def on_task_submitted(self, event: TaskSubmitted) -> bool:
        """``.sync``: the job (child execution) was started; the task keeps waiting. A Map
        Run's child: accepted (the host keeps the task waiting), with no history."""
        if self.map_run_frame(event.ref) is not None:
            return True
        found = self.task_frame(event.ref)
        if found is None or found[1].submitted or found[1].resource in dist.INTERNAL_RESOURCES:
            return False
        frame, task = found
        task.submitted = True
        resource_type, resource = resource_parts(task.resource)
        self.emit(
            frame,
            "TaskSubmitted",
            "taskSubmittedEventDetails",
            {"resourceType": resource_type, "resource": resource, **_io("output", event.output)},
        )
        return True

    def task_event(self, frame: Frame, task: TaskWait, kind: str, details: dict[str, Any]) -> None:
        """``Task<kind>`` (with resourceType/resource) or, for an activity, ``Activity<kind>``."""
        if is_activity(task.resource):
            self.emit(frame, f"Activity{kind}", f"activity{kind}EventDetails", details)
            return
        resource_type, resource = resource_parts(task.resource)
        self.emit(
            frame,
            f"Task{kind}",
            f"task{kind}EventDetails",
            {"resourceType": resource_type, "resource": resource, **details},
        )

    def on_task_succeeded(self, event: TaskSucceeded) -> bool:
        map_frame = self.map_run_frame(event.ref)
        if map_frame is not None:
            self.on_iteration(map_frame, event.ref, event.output, None, None)
            self.queue.append(map_frame.id)
            return True
        found = self.task_frame(event.ref)
        if found is None:
            return False
        frame, task = found
        if task.resource in dist.INTERNAL_RESOURCES:
            self.on_host_task(frame, task, event)
            return True
        sd = self.sdef(frame)
        self.close_task(frame, task)
        resource = task.resource if is_activity(task.resource) else resource_parts(task.resource)[1]
        if paths.payload_size(event.output) > paths.MAX_PAYLOAD_BYTES:
            err = StatesError(
                errors.DATA_LIMIT_EXCEEDED,
                f"The state/task '{resource}' returned a result with a size exceeding the "
                "maximum number of bytes service limit.",
                state_scoped=False,
            )
            self.task_event(frame, task, "Failed", {"error": err.error, "cause": err.cause})
            self.state_failed(frame, sd, err, from_task=True)
        else:
            self.task_event(frame, task, "Succeeded", _io("output", event.output))
            try:
                result = event.output
                if sd.result_selector is not None:
                    result = render(sd.result_selector, self.scope(result, self.context(frame)))
                self.finish_state(frame, sd, result, event.output)
            except StatesError as err:
                self.state_failed(frame, sd, err)
        self.queue.append(frame.id)
        return True

    def on_task_failed(self, event: TaskFailed) -> bool:
        map_frame = self.map_run_frame(event.ref)
        if map_frame is not None:
            error = event.error or errors.TASK_FAILED
            self.on_iteration(map_frame, event.ref, None, error, event.cause)
            self.queue.append(map_frame.id)
            return True
        found = self.task_frame(event.ref)
        if found is None:
            return False
        frame, task = found
        if task.resource in dist.INTERNAL_RESOURCES:
            self.on_host_task(frame, task, event)
            return True
        sd = self.sdef(frame)
        self.close_task(frame, task)
        error = event.error or errors.TASK_FAILED
        self.task_event(frame, task, "Failed", _error_details(error, event.cause))
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
            self.task_event(frame, task, "TimedOut", {"error": error})
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
        TaskSubmitted: run.on_task_submitted,
        TaskSucceeded: run.on_task_succeeded,
        TaskFailed: run.on_task_failed,
        TaskHeartbeat: run.on_heartbeat,
        TimerFired: run.on_timer,
        Stop: run.on_stop,
        MapRunUpdated: run.on_map_run_updated,
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
