"""Events, commands, history and execution state serialise to plain JSON and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.workflows.asl import (
    CancelTask,
    CancelTimer,
    Env,
    ExecutionState,
    ScheduleTask,
    Start,
    StartTimer,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSucceeded,
    TimerFired,
    advance,
    command_from_dict,
    command_to_dict,
    compile_machine,
    event_from_dict,
    event_to_dict,
)
from app.workflows.asl.model import HistoryEvent, iso, parse_iso

from .conftest import T0, env

EVENTS = [
    Start({"a": [1]}, "arn:e", "e", "arn:sm", "sm", "arn:role"),
    TaskStarted("T@1.0"),
    TaskSucceeded("T@1.0", {"x": None}),
    TaskFailed("T@1.0", "E", "c"),
    TaskHeartbeat("T@1.0"),
    TimerFired("W@1:wait"),
    Stop("E", None),
]
COMMANDS = [
    ScheduleTask("T@1.0", "T", "r", {"p": 1}, 10, None, "tok"),
    CancelTask("T@1.0"),
    StartTimer("W@1:wait", "2024-05-01T12:00:10.000Z", "wait"),
    CancelTimer("W@1:wait"),
]


@pytest.mark.parametrize("event", EVENTS)
def test_events_round_trip_through_json(event: object) -> None:
    data = json.loads(json.dumps(event_to_dict(event)))  # type: ignore[arg-type]
    assert data["type"] == type(event).__name__
    assert event_from_dict(data) == event


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_round_trip_through_json(command: object) -> None:
    data = json.loads(json.dumps(command_to_dict(command)))  # type: ignore[arg-type]
    assert command_from_dict(data) == command


def test_timer_fire_at_parses() -> None:
    assert StartTimer("x", "2024-05-01T12:00:10.000Z", "wait").fire_at_datetime == (
        T0 + timedelta(seconds=10)
    )


def test_iso_is_utc_with_milliseconds() -> None:
    local = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert iso(local) == "2024-05-01T12:00:00.123Z"
    assert parse_iso("2024-05-01T12:00:00.123Z") == datetime(
        2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC
    )


def test_history_event_shape() -> None:
    event = HistoryEvent(
        3,
        2,
        "2024-05-01T12:00:00.000Z",
        "PassStateEntered",
        "stateEnteredEventDetails",
        {"name": "A"},
    )
    assert event.to_dict() == {
        "id": 3,
        "previousEventId": 2,
        "timestamp": "2024-05-01T12:00:00.000Z",
        "type": "PassStateEntered",
        "stateEnteredEventDetails": {"name": "A"},
    }
    assert "x" not in HistoryEvent(1, 0, "t", "ParallelStateStarted").to_dict()


def test_execution_state_round_trip_mid_execution() -> None:
    machine = compile_machine(
        {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [
                        {
                            "StartAt": "T",
                            "States": {
                                "T": {
                                    "Type": "Task",
                                    "Resource": "r",
                                    "HeartbeatSeconds": 5,
                                    "End": True,
                                }
                            },
                        },
                        {
                            "StartAt": "W",
                            "States": {"W": {"Type": "Wait", "Seconds": 5, "End": True}},
                        },
                    ],
                }
            },
        }
    )
    step = advance(machine, None, Start({"k": "v"}), env())
    text = step.state.to_json()
    restored = ExecutionState.from_json(text)
    assert restored == step.state
    assert restored.to_json() == text
    assert set(restored.pending) == {
        "P@1.0[0]/T@1.0",
        "P@1.0[0]/T@1.0:heartbeat.0",
        "P@1.0[1]/W@1:wait",
    }


def test_state_version_is_checked() -> None:
    machine = compile_machine({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    data = advance(machine, None, Start({}), env()).state.to_dict()
    data["version"] = 99
    with pytest.raises(ValueError, match="unsupported execution state version"):
        ExecutionState.from_dict(data)


def test_env_factories() -> None:
    seeded = Env.seeded(T0, 1)
    assert Env.seeded(T0, 1).uuid() == seeded.uuid()
    assert 0 <= seeded.random() < 1
    system = Env.system(T0)
    assert len(system.uuid()) == 36
    assert system.at(T0 + timedelta(seconds=1)).now == T0 + timedelta(seconds=1)
