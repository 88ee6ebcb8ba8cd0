"""A pure Amazon States Language (JSONPath) interpreter.

No I/O, no clock and no randomness of its own: the host persists the
:class:`ExecutionState`, performs the :data:`Command` list and feeds results back as events::

    machine = compile_machine(definition)              # validates; raises InvalidDefinition
    step = advance(machine, None, Start(input), env)   # env: now, random, uuid
    # persist step.state, append step.history, perform step.commands (ScheduleTask, StartTimer...)
    step = advance(machine, step.state, TaskSucceeded(ref, output), env)

``run_to_completion`` drives the same loop synchronously (Express executions, tests).
"""

from app.workflows.asl.errors import Diagnostic, InvalidDefinition, StatesError
from app.workflows.asl.interpreter import (
    EXECUTION_TIMEOUT_REF,
    NO_RESPONSE,
    CompiledMachine,
    Completion,
    TaskError,
    TaskRunner,
    advance,
    compile_machine,
    run_to_completion,
)
from app.workflows.asl.model import (
    Advance,
    CancelTask,
    CancelTimer,
    Command,
    Env,
    Event,
    ExecutionState,
    HistoryEvent,
    MapRunUpdated,
    ScheduleTask,
    Start,
    StartTimer,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TimerFired,
    command_from_dict,
    command_to_dict,
    event_from_dict,
    event_to_dict,
)
from app.workflows.asl.validate import (
    ensure_valid,
    validate_definition,
    validation_result,
)

__all__ = [
    "EXECUTION_TIMEOUT_REF",
    "NO_RESPONSE",
    "Advance",
    "CancelTask",
    "CancelTimer",
    "Command",
    "CompiledMachine",
    "Completion",
    "Diagnostic",
    "Env",
    "Event",
    "ExecutionState",
    "HistoryEvent",
    "InvalidDefinition",
    "MapRunUpdated",
    "ScheduleTask",
    "Start",
    "StartTimer",
    "StatesError",
    "Stop",
    "TaskError",
    "TaskFailed",
    "TaskHeartbeat",
    "TaskRunner",
    "TaskStarted",
    "TaskSubmitted",
    "TaskSucceeded",
    "TimerFired",
    "advance",
    "command_from_dict",
    "command_to_dict",
    "compile_machine",
    "ensure_valid",
    "event_from_dict",
    "event_to_dict",
    "run_to_completion",
    "validate_definition",
    "validation_result",
]
