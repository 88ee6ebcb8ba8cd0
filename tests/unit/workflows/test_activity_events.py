"""Activity resources and ``.sync`` submissions in the interpreter.

Shapes from botocore's ``stepfunctions`` service model (``HistoryEvent``:
``activityScheduledEventDetails``, ``activityStartedEventDetails``, ...,
``taskSubmittedEventDetails``)."""

from __future__ import annotations

from typing import Any

from app.workflows.asl import (
    ScheduleTask,
    Start,
    TaskFailed,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TimerFired,
    advance,
    compile_machine,
    event_from_dict,
    event_to_dict,
)
from app.workflows.asl.interpreter import is_activity

from .conftest import env

ACTIVITY = "arn:aws:states:us-east-1:123456789012:activity:pack"
SYNC = "arn:aws:states:::states:startExecution.sync:2"


def machine(resource: str, **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": resource, "End": True, **extra}},
    }


def test_is_activity() -> None:
    assert is_activity(ACTIVITY)
    assert is_activity("arn:aws-cn:states:cn-north-1:1:activity:a-b_c")
    assert not is_activity("arn:aws:states:::lambda:invoke")
    assert not is_activity("arn:aws:states:us-east-1:1:stateMachine:activity")


def test_activity_gets_a_token_and_activity_history_events() -> None:
    compiled = compile_machine(
        machine(ACTIVITY, Parameters={"x.$": "$.x"}, TimeoutSeconds=60, HeartbeatSeconds=20)
    )
    first = advance(compiled, None, Start({"x": 1}), env())
    (command,) = [c for c in first.commands if isinstance(c, ScheduleTask)]
    assert command.task_token is not None
    assert first.state.ref_for_token(command.task_token) == command.ref
    scheduled = first.history[-1].to_dict()
    assert scheduled["type"] == "ActivityScheduled"
    assert scheduled["activityScheduledEventDetails"] == {
        "resource": ACTIVITY,
        "input": '{"x":1}',
        "inputDetails": {"truncated": False},
        "timeoutInSeconds": 60,
        "heartbeatInSeconds": 20,
    }
    started = advance(compiled, first.state, TaskStarted(command.ref, "worker-7"), env())
    assert [h.to_dict() for h in started.history] == [
        {
            "id": 4,
            "previousEventId": 3,
            "timestamp": started.history[0].timestamp,
            "type": "ActivityStarted",
            "activityStartedEventDetails": {"workerName": "worker-7"},
        }
    ]
    done = advance(compiled, started.state, TaskSucceeded(command.ref, {"ok": True}), env())
    assert [h.type for h in done.history] == [
        "ActivitySucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert done.history[0].details == {
        "output": '{"ok":true}',
        "outputDetails": {"truncated": False},
    }


def test_activity_failure_and_timeout_events() -> None:
    compiled = compile_machine(machine(ACTIVITY, TimeoutSeconds=5))
    first = advance(compiled, None, Start({}), env())
    failed = advance(compiled, first.state, TaskFailed("T@1.0", "Boom", "bad"), env())
    assert failed.history[0].to_dict()["activityFailedEventDetails"] == {
        "error": "Boom",
        "cause": "bad",
    }
    assert failed.error == "Boom"
    timed_out = advance(compiled, first.state, TimerFired("T@1.0:timeout"), env())
    assert timed_out.history[0].type == "ActivityTimedOut"
    assert timed_out.history[0].details == {"error": "States.Timeout"}
    assert timed_out.error == "States.Timeout"


def test_task_submitted_records_and_keeps_waiting() -> None:
    compiled = compile_machine(machine(SYNC, Parameters={"StateMachineArn": "arn:sm"}))
    first = advance(compiled, None, Start({}), env())
    assert first.commands[0].task_token is None  # type: ignore[union-attr]
    started = advance(compiled, first.state, TaskStarted("T@1.0"), env())
    submitted = advance(
        compiled, started.state, TaskSubmitted("T@1.0", {"ExecutionArn": "arn:child"}), env()
    )
    assert not submitted.ignored
    assert not submitted.finished
    assert not submitted.commands
    assert submitted.history[0].to_dict()["taskSubmittedEventDetails"] == {
        "resourceType": "states",
        "resource": "startExecution.sync:2",
        "output": '{"ExecutionArn":"arn:child"}',
        "outputDetails": {"truncated": False},
    }
    again = advance(compiled, submitted.state, TaskSubmitted("T@1.0", {}), env())
    assert again.ignored
    done = advance(compiled, submitted.state, TaskSucceeded("T@1.0", {"Output": {}}), env())
    assert done.status == "SUCCEEDED"
    assert done.history[0].type == "TaskSucceeded"


def test_new_event_fields_round_trip() -> None:
    for event in (TaskSubmitted("T@1.0", {"a": 1}), TaskStarted("T@1.0", "w")):
        assert event_from_dict(event_to_dict(event)) == event
    assert event_from_dict({"type": "TaskStarted", "ref": "x"}) == TaskStarted("x")
