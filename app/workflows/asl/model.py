"""Typed, JSON-serialisable data the interpreter takes and returns.

* **Events** (host -> interpreter): :class:`Start`, :class:`TaskStarted`,
  :class:`TaskSubmitted`, :class:`TaskSucceeded`, :class:`TaskFailed`, :class:`TaskHeartbeat`,
  :class:`TimerFired`, :class:`Stop`.
* **Commands** (interpreter -> host): :class:`ScheduleTask`, :class:`CancelTask`,
  :class:`StartTimer`, :class:`CancelTimer`.
* **History**: :class:`HistoryEvent`, in ``GetExecutionHistory``'s shape.
* **State**: :class:`ExecutionState`, a tree of :class:`Frame` (the root workflow, each
  Parallel branch and each Map iteration is a frame), plus an index of the refs the execution
  waits on. ``to_dict``/``from_dict`` round-trip it through plain JSON.

Every event and command has ``to_dict``/``from_dict`` with a ``"type"`` discriminator.
"""

from __future__ import annotations

import json
import random as _random
import uuid as _uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

Status: TypeAlias = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
TERMINAL_STATUSES: Final = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
STATE_VERSION: Final = 1


def iso(ts: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: UTC, milliseconds, as Step Functions prints timestamps."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- Environment ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Env:
    """Everything non-deterministic the interpreter may use: the time of the event, a source of
    floats in [0, 1) (FULL jitter, ``States.MathRandom``) and a UUID factory (``States.UUID``,
    task tokens)."""

    now: datetime
    random: Callable[[], float]
    uuid: Callable[[], str]

    @classmethod
    def seeded(cls, now: datetime, seed: int = 0) -> Env:
        """A reproducible environment (tests, Express replays)."""
        rng = _random.Random(seed)
        return cls(now, rng.random, lambda: str(_uuid.UUID(int=rng.getrandbits(128), version=4)))

    @classmethod
    def system(cls, now: datetime) -> Env:
        rng = _random.SystemRandom()
        return cls(now, rng.random, lambda: str(_uuid.uuid4()))

    def at(self, now: datetime) -> Env:
        return Env(now, self.random, self.uuid)


# --- Events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    input: Any
    execution_id: str = "arn:aws:states:local:000000000000:execution:machine:execution"
    execution_name: str = "execution"
    state_machine_id: str = "arn:aws:states:local:000000000000:stateMachine:machine"
    state_machine_name: str = "machine"
    role_arn: str = "arn:aws:iam::000000000000:role/smokehouse"
    type: Literal["Start"] = "Start"


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The task began; ``worker_name`` is an activity worker's ``GetActivityTask`` identity
    (``ActivityStarted``'s ``workerName``)."""

    ref: str
    worker_name: str | None = None
    type: Literal["TaskStarted"] = "TaskStarted"


@dataclass(frozen=True, slots=True)
class TaskSubmitted:
    """A ``.sync`` integration's job was started (e.g. the child execution of
    ``states:startExecution.sync``): records ``TaskSubmitted``; the task keeps waiting for its
    ``TaskSucceeded``/``TaskFailed``."""

    ref: str
    output: Any = None
    type: Literal["TaskSubmitted"] = "TaskSubmitted"


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    ref: str
    output: Any
    type: Literal["TaskSucceeded"] = "TaskSucceeded"


@dataclass(frozen=True, slots=True)
class TaskFailed:
    ref: str
    error: str | None = None
    cause: str | None = None
    type: Literal["TaskFailed"] = "TaskFailed"


@dataclass(frozen=True, slots=True)
class TaskHeartbeat:
    ref: str
    type: Literal["TaskHeartbeat"] = "TaskHeartbeat"


@dataclass(frozen=True, slots=True)
class TimerFired:
    ref: str
    type: Literal["TimerFired"] = "TimerFired"


@dataclass(frozen=True, slots=True)
class Stop:
    """``StopExecution``: the execution ends ``ABORTED``."""

    error: str | None = None
    cause: str | None = None
    type: Literal["Stop"] = "Stop"


@dataclass(frozen=True, slots=True)
class MapRunUpdated:
    """``UpdateMapRun``: new ``MaxConcurrency`` (0: AWS's default) and failure thresholds for a
    running distributed Map's Map Run; None leaves a value unchanged."""

    map_run_arn: str
    max_concurrency: int | None = None
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None
    type: Literal["MapRunUpdated"] = "MapRunUpdated"


Event: TypeAlias = (
    Start
    | TaskStarted
    | TaskSubmitted
    | TaskSucceeded
    | TaskFailed
    | TaskHeartbeat
    | TimerFired
    | Stop
    | MapRunUpdated
)
_EVENT_TYPES: Final[dict[str, type[Any]]] = {
    c.__name__: c
    for c in (
        Start,
        TaskStarted,
        TaskSubmitted,
        TaskSucceeded,
        TaskFailed,
        TaskHeartbeat,
        TimerFired,
        Stop,
        MapRunUpdated,
    )
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """Shallow: an event's fields are JSON values, never dataclasses, so ``asdict``'s deep copy
    of the input (a whole telemetry batch) would buy nothing."""
    return {f.name: getattr(event, f.name) for f in fields(event)}


def event_from_dict(data: dict[str, Any]) -> Event:
    cls = _EVENT_TYPES[data["type"]]
    event: Event = cls(**data)
    return event


# --- Commands -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleTask:
    """Run ``resource`` with ``parameters``; report back with ``TaskSucceeded``/``TaskFailed``
    carrying ``ref``. With ``task_token`` (``.waitForTaskToken``) the result arrives later, from
    whoever holds the token: the host maps it back to ``ref``."""

    ref: str
    state_name: str
    resource: str
    parameters: Any
    timeout_seconds: int | None
    heartbeat_seconds: int | None
    task_token: str | None = None
    type: Literal["ScheduleTask"] = "ScheduleTask"

    @property
    def task_token_needed(self) -> bool:
        return self.task_token is not None


@dataclass(frozen=True, slots=True)
class CancelTask:
    ref: str
    type: Literal["CancelTask"] = "CancelTask"


TimerPurpose: TypeAlias = Literal["wait", "retry", "timeout", "heartbeat", "execution_timeout"]


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver ``TimerFired(ref)`` at ``fire_at`` (an ISO-8601 UTC string)."""

    ref: str
    fire_at: str
    purpose: TimerPurpose
    type: Literal["StartTimer"] = "StartTimer"

    @property
    def fire_at_datetime(self) -> datetime:
        return parse_iso(self.fire_at)


@dataclass(frozen=True, slots=True)
class CancelTimer:
    ref: str
    type: Literal["CancelTimer"] = "CancelTimer"


Command: TypeAlias = ScheduleTask | CancelTask | StartTimer | CancelTimer
_COMMAND_TYPES: Final[dict[str, type[Any]]] = {
    c.__name__: c for c in (ScheduleTask, CancelTask, StartTimer, CancelTimer)
}


def command_to_dict(command: Command) -> dict[str, Any]:
    return asdict(command)


def command_from_dict(data: dict[str, Any]) -> Command:
    command: Command = _COMMAND_TYPES[data["type"]](**data)
    return command


# --- History --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One ``GetExecutionHistory`` event; ``details_key`` is e.g. ``stateEnteredEventDetails``."""

    id: int
    previous_event_id: int
    timestamp: str
    type: str
    details_key: str | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "previousEventId": self.previous_event_id,
            "timestamp": self.timestamp,
            "type": self.type,
        }
        if self.details_key is not None:
            out[self.details_key] = self.details
        return out


# --- Execution state ------------------------------------------------------------------------------


@dataclass(slots=True)
class TaskWait:
    """The task a frame waits for."""

    ref: str
    resource: str
    token: str | None = None
    timeout_ref: str | None = None
    heartbeat_ref: str | None = None
    heartbeat_seconds: int | None = None
    heartbeat_seq: int = 0
    started: bool = False
    submitted: bool = False


@dataclass(slots=True)
class ChildRun:
    """The branches of a Parallel state or the iterations of a Map state."""

    kind: Literal["Parallel", "Map"]
    total: int
    inputs: list[Any]  # one per branch / iteration
    max_concurrency: int  # 0: no limit
    started_event_id: int = 0  # ParallelStateStarted / MapStateStarted
    started: int = 0
    running: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    done: int = 0
    # a distributed Map's Map Run: ``running`` then holds the refs of the child-execution
    # tasks (``<Map>@<visit>.<attempt>[<index>]``), not frame ids
    map_run_arn: str | None = None
    succeeded: int = 0
    failed: int = 0
    tolerated_count: int | None = None
    tolerated_percentage: float | None = None
    keep_results: bool = True  # False with a ResultWriter: the host reads the children
    items: int = 0  # items read (children run batches of them with an ItemBatcher)
    batch_sizes: list[int] = field(default_factory=list)  # items per child, when batching


Phase: TypeAlias = Literal["enter", "rerun", "task", "retry", "wait", "children", "done"]


@dataclass(slots=True)
class Frame:
    """One running workflow: the root, a Parallel branch or a Map iteration."""

    id: str
    workflow: str  # key of CompiledMachine.workflows
    parent: str | None
    index: int
    status: Literal["running", "succeeded", "failed"] = "running"
    phase: Phase = "enter"
    state: str | None = None  # the current state
    input: Any = None  # raw input of the current state
    effective: Any = None  # after InputPath (and Parameters for Task/Parallel)
    visits: dict[str, int] = field(default_factory=dict)
    visit: int = 0
    attempt: int = 0
    retry_counts: list[int] = field(default_factory=list)
    entered_time: str = ""
    entered_event_id: int = 0
    last_event_id: int = 0
    task: TaskWait | None = None
    wait_ref: str | None = None
    retry_ref: str | None = None
    children: ChildRun | None = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    # the workflow variables assigned in this scope (the root workflow, a branch, an
    # iteration); states read the enclosing scopes' too. Absent in states saved before
    # variables existed: loads as empty.
    variables: dict[str, Any] = field(default_factory=dict)

    def fork(self) -> Frame:
        """See :meth:`ExecutionState.fork`."""
        children = self.children
        if children is not None:
            children = replace(
                children,
                inputs=list(children.inputs),
                running=list(children.running),
                results=list(children.results),
                batch_sizes=list(children.batch_sizes),
            )
        return replace(
            self,
            visits=dict(self.visits),
            retry_counts=list(self.retry_counts),
            variables=dict(self.variables),
            task=None if self.task is None else replace(self.task),
            children=children,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Frame:
        d = dict(d)
        if d.get("task") is not None:
            d["task"] = TaskWait(**d["task"])
        if d.get("children") is not None:
            d["children"] = ChildRun(**d["children"])
        return cls(**d)


@dataclass(slots=True)
class PendingRef:
    kind: TimerPurpose | Literal["task"]
    frame: str


@dataclass(slots=True)
class ExecutionInfo:
    id: str
    name: str
    input: Any
    start_time: str
    role_arn: str
    state_machine_id: str
    state_machine_name: str


@dataclass(slots=True)
class ExecutionState:
    """Everything needed to resume an execution; ``to_dict`` is plain JSON."""

    execution: ExecutionInfo
    status: Status = "RUNNING"
    next_event_id: int = 1
    frames: dict[str, Frame] = field(default_factory=dict)
    pending: dict[str, PendingRef] = field(default_factory=dict)
    output: Any = None
    error: str | None = None
    cause: str | None = None
    version: int = STATE_VERSION
    # the distributed Maps' Map Runs, by ARN (kept after they end, for the host's map_runs
    # rows): {"status", "machine_arn", "execution_type", "max_concurrency",
    # "tolerated_count", "tolerated_percentage", "items", "children"}. Absent in states saved
    # before distributed Map: loads as empty.
    map_runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecutionState:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported execution state version {d.get('version')!r}")
        return cls(
            execution=ExecutionInfo(**d["execution"]),
            status=d["status"],
            next_event_id=d["next_event_id"],
            frames={k: Frame.from_dict(v) for k, v in d["frames"].items()},
            pending={k: PendingRef(**v) for k, v in d["pending"].items()},
            output=d.get("output"),
            error=d.get("error"),
            cause=d.get("cause"),
            map_runs={k: dict(v) for k, v in d.get("map_runs", {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> ExecutionState:
        return cls.from_dict(json.loads(text))

    def fork(self) -> ExecutionState:
        """A copy :func:`advance` may change: the bookkeeping is copied, the JSON documents
        (inputs, outputs, results) are shared. The interpreter never changes a JSON value in
        place (paths copy the containers they write into), and copying a large input on every
        event was the dearest step of a short execution."""
        return replace(
            self,
            execution=replace(self.execution),
            frames={key: frame.fork() for key, frame in self.frames.items()},
            pending={key: replace(ref) for key, ref in self.pending.items()},
            map_runs={key: dict(run) for key, run in self.map_runs.items()},
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def ref_for_token(self, token: str) -> str | None:
        """The task ref a ``.waitForTaskToken`` token belongs to."""
        for frame in self.frames.values():
            if frame.task is not None and frame.task.token == token:
                return frame.task.ref
        return None


@dataclass(slots=True)
class Advance:
    """What one :func:`~app.workflows.asl.interpreter.advance` call produced."""

    state: ExecutionState
    commands: list[Command]
    history: list[HistoryEvent]
    ignored: bool = False  # the event was a duplicate or addressed nothing (no change)

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def output(self) -> Any:
        return self.state.output

    @property
    def error(self) -> str | None:
        return self.state.error

    @property
    def cause(self) -> str | None:
        return self.state.cause
