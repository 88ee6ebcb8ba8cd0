"""The step engine: states, data flow, Parallel/Map frames, Retry/Catch timing, timeouts,
history, resumability and idempotency."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.workflows.asl import (
    NO_RESPONSE,
    Advance,
    CancelTask,
    CancelTimer,
    Env,
    ExecutionState,
    ScheduleTask,
    Start,
    StartTimer,
    Stop,
    TaskError,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSucceeded,
    TimerFired,
    advance,
    compile_machine,
    errors,
    run_to_completion,
)
from app.workflows.asl.interpreter import resource_parts
from app.workflows.asl.model import parse_iso

from .conftest import T0, env, run, types

LAMBDA = "arn:aws:states:::lambda:invoke"
PASS_END = {"Type": "Pass", "End": True}


def machine(**states: Any) -> dict[str, Any]:
    return {"StartAt": next(iter(states)), "States": states}


def tasks(result: Advance) -> list[ScheduleTask]:
    return [c for c in result.commands if isinstance(c, ScheduleTask)]


def timers(result: Advance) -> list[StartTimer]:
    return [c for c in result.commands if isinstance(c, StartTimer)]


def offset(timer: StartTimer) -> float:
    return (parse_iso(timer.fire_at) - T0).total_seconds()


# -- simple states --------------------------------------------------------------------------------


def test_pass_states_run_in_one_call_with_result_and_result_path() -> None:
    definition = machine(
        A={"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "Next": "B"},
        B={"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.r.x, $.n)"}, "Next": "C"},
        C={"Type": "Succeed"},
    )
    compiled = compile_machine(definition)
    result = advance(compiled, None, Start({"n": 41}), env())
    assert result.status == "SUCCEEDED"
    assert result.output == {"sum": 42}
    assert result.commands == []
    assert types_of(result) == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "PassStateEntered",
        "PassStateExited",
        "SucceedStateEntered",
        "SucceedStateExited",
        "ExecutionSucceeded",
    ]
    ids = [(h.id, h.previous_event_id) for h in result.history]
    assert ids == [(1, 0), (2, 0), (3, 2), (4, 3), (5, 4), (6, 5), (7, 6), (8, 7)]
    started = result.history[0].to_dict()
    assert started["executionStartedEventDetails"]["input"] == '{"n":41}'
    assert result.history[-1].to_dict()["executionSucceededEventDetails"]["output"] == (
        '{"sum":42}'
    )


def types_of(result: Advance) -> list[str]:
    return [h.type for h in result.history]


def test_result_path_null_keeps_input_and_output_path_null_gives_empty_object() -> None:
    done = run(
        machine(
            A={"Type": "Pass", "Result": 1, "ResultPath": None, "Next": "B"},
            B={"Type": "Pass", "OutputPath": None, "End": True},
        ),
        {"k": 1},
    )
    assert done.output == {}
    assert run(
        machine(A={"Type": "Pass", "Result": 1, "ResultPath": None, "End": True}), {"k": 1}
    ).output == {"k": 1}


def test_fail_state_error_and_cause() -> None:
    done = run(machine(F={"Type": "Fail", "Error": "MyError", "Cause": "my cause"}))
    assert (done.status, done.error, done.cause) == ("FAILED", "MyError", "my cause")
    assert done.history[-1].to_dict()["executionFailedEventDetails"] == {
        "error": "MyError",
        "cause": "my cause",
    }


def test_fail_state_error_path_and_cause_path() -> None:
    done = run(
        machine(
            F={"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('bad {}', $.c)"}
        ),
        {"e": "StudentDeletionFailed", "c": "boom"},
    )
    assert (done.error, done.cause) == ("StudentDeletionFailed", "bad boom")
    wrong = run(machine(F={"Type": "Fail", "ErrorPath": "$.e"}), {"e": 5})
    assert wrong.error == errors.RUNTIME


def test_succeed_applies_input_path_then_output_path() -> None:
    done = run(
        machine(S={"Type": "Succeed", "InputPath": "$.scoped", "OutputPath": "$.visible"}),
        {"visible": {"source": "wrong"}, "scoped": {"visible": {"source": "right"}}},
    )
    assert done.output == {"source": "right"}


# -- context object -------------------------------------------------------------------------------


def test_context_object_fields() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "token.$": "$$.Task.Token",
                "id.$": "$$.Execution.Id",
                "input.$": "$$.Execution.Input",
                "name.$": "$$.Execution.Name",
                "start.$": "$$.Execution.StartTime",
                "role.$": "$$.Execution.RoleArn",
                "state.$": "$$.State.Name",
                "entered.$": "$$.State.EnteredTime",
                "retries.$": "$$.State.RetryCount",
                "sm.$": "$$.StateMachine.Id",
                "smName.$": "$$.StateMachine.Name",
            },
            "End": True,
        }
    )
    compiled = compile_machine(definition)
    start = Start({"a": 1}, "arn:exec", "exec-1", "arn:sm", "sm-1", "arn:role")
    result = advance(compiled, None, start, env())
    (command,) = tasks(result)
    assert command.task_token_needed
    assert command.task_token is not None
    assert command.parameters == {
        "token": command.task_token,
        "id": "arn:exec",
        "input": {"a": 1},
        "name": "exec-1",
        "start": "2024-05-01T12:00:00.000Z",
        "role": "arn:role",
        "state": "T",
        "entered": "2024-05-01T12:00:00.000Z",
        "retries": 0,
        "sm": "arn:sm",
        "smName": "sm-1",
    }
    assert result.state.ref_for_token(command.task_token) == command.ref == "T@1.0"
    later = advance(compiled, result.state, TaskSucceeded(command.ref, {"ok": 1}), env())
    assert later.output == {"ok": 1}


def test_retry_count_in_context_grows() -> None:
    seen: list[int] = []

    def flaky(command: ScheduleTask) -> Any:
        seen.append(command.parameters["n"])
        if len(seen) < 3:
            raise TaskError("Flaky")
        return "ok"

    definition = machine(
        T={
            "Type": "Task",
            "Resource": LAMBDA,
            "Parameters": {"n.$": "$$.State.RetryCount"},
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1}],
            "End": True,
        }
    )
    assert run(definition, {}, flaky).output == "ok"
    assert seen == [0, 1, 2]


# -- Task data flow and history -------------------------------------------------------------------


def test_task_history_and_commands() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": LAMBDA,
            "Parameters": {"x.$": "$.x"},
            "TimeoutSeconds": 30,
            "HeartbeatSeconds": 10,
            "End": True,
        }
    )
    compiled = compile_machine(definition)
    first = advance(compiled, None, Start({"x": 1}), env())
    (command,) = tasks(first)
    assert command == ScheduleTask("T@1.0", "T", LAMBDA, {"x": 1}, 30, 10, None)
    assert [(t.ref, offset(t), t.purpose) for t in timers(first)] == [
        ("T@1.0:timeout", 30.0, "timeout"),
        ("T@1.0:heartbeat.0", 10.0, "heartbeat"),
    ]
    scheduled = first.history[-1].to_dict()
    assert scheduled["type"] == "TaskScheduled"
    assert scheduled["taskScheduledEventDetails"] == {
        "resourceType": "lambda",
        "resource": "invoke",
        "parameters": '{"x":1}',
        "timeoutInSeconds": 30,
        "heartbeatInSeconds": 10,
    }
    started = advance(compiled, first.state, TaskStarted("T@1.0"), env())
    assert types_of(started) == ["TaskStarted"]
    done = advance(compiled, started.state, TaskSucceeded("T@1.0", {"y": 2}), env())
    assert types_of(done) == ["TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]
    assert {type(c) for c in done.commands} == {CancelTimer}
    assert done.output == {"y": 2}


def test_resource_parts() -> None:
    assert resource_parts("arn:aws:states:::sqs:sendMessage.waitForTaskToken") == (
        "sqs",
        "sendMessage.waitForTaskToken",
    )
    assert resource_parts("arn:aws:lambda:us-east-1:1:function:f") == (
        "lambda",
        "arn:aws:lambda:us-east-1:1:function:f",
    )
    assert resource_parts("smokehouse:ec2.runInstance") == ("smokehouse", "ec2.runInstance")
    assert resource_parts("plain") == ("task", "plain")


def test_parameter_path_failure_is_states_runtime_with_aws_cause() -> None:
    definition = machine(
        Check={"Type": "Pass", "Next": "Address"},
        Address={
            "Type": "Task",
            "Resource": LAMBDA,
            "Parameters": {"address.$": "$.application.address"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "End": True,
        },
        Caught=PASS_END,
    )
    done = run(definition, {"flagged": False})
    assert done.status == "FAILED"  # States.Runtime is never caught
    assert done.error == "States.Runtime"
    assert done.cause == (
        "An error occurred while executing the state 'Address' (entered at the event id #4). "
        "The JSONPath '$.application.address' specified for the field 'address.$' could not be "
        "found in the input '{\"flagged\":false}'"
    )


# -- Wait -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Seconds": 10}, 10.0),
        ({"SecondsPath": "$.s"}, 25.0),
        ({"Timestamp": "2024-05-01T12:01:00Z"}, 60.0),
        ({"TimestampPath": "$.when"}, 3600.0),
    ],
)
def test_wait_variants_start_timers(state: dict[str, Any], expected: float) -> None:
    compiled = compile_machine(machine(W={"Type": "Wait", "Next": "Done", **state}, Done=PASS_END))
    first = advance(compiled, None, Start({"s": 25, "when": "2024-05-01T13:00:00+00:00"}), env())
    (timer,) = timers(first)
    assert (timer.ref, timer.purpose, offset(timer)) == ("W@1:wait", "wait", expected)
    assert first.status == "RUNNING"
    fired = advance(
        compiled, first.state, TimerFired("W@1:wait"), env(now=T0 + timedelta(seconds=expected))
    )
    assert fired.status == "SUCCEEDED"
    assert types_of(fired) == [
        "WaitStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]


def test_wait_in_the_past_or_zero_does_not_need_a_timer() -> None:
    compiled = compile_machine(
        machine(
            W={"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z", "Next": "Z"},
            Z={"Type": "Wait", "Seconds": 0, "End": True},
        )
    )
    assert advance(compiled, None, Start({}), env()).status == "SUCCEEDED"


def test_wait_with_bad_seconds_path_fails() -> None:
    done = run(machine(W={"Type": "Wait", "SecondsPath": "$.s", "End": True}), {"s": "soon"})
    assert done.error == errors.RUNTIME


# -- Parallel -------------------------------------------------------------------------------------


def test_doc_parallel_example() -> None:
    definition = {
        "StartAt": "LookupCustomerInfo",
        "States": {
            "LookupCustomerInfo": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "LookupAddress",
                        "States": {
                            "LookupAddress": {
                                "Type": "Task",
                                "Resource": "arn:aws:lambda:::function:AddressFinder",
                                "End": True,
                            }
                        },
                    },
                    {
                        "StartAt": "LookupPhone",
                        "States": {
                            "LookupPhone": {
                                "Type": "Task",
                                "Resource": "arn:aws:lambda:::function:PhoneFinder",
                                "End": True,
                            }
                        },
                    },
                ],
            }
        },
    }
    done = run(
        definition,
        {"customer": 7},
        {"LookupAddress": {"address": "1 Main"}, "LookupPhone": {"phone": "555"}},
    )
    assert done.output == [{"address": "1 Main"}, {"phone": "555"}]


def test_parallel_branches_are_outstanding_together_and_history_chains() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "Next": "After",
            "ResultPath": "$.branches",
            "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "a", "End": True}}},
                {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "b", "End": True}}},
            ],
        },
        After=PASS_END,
    )
    compiled = compile_machine(definition)
    first = advance(compiled, None, Start({"x": 1}), env())
    assert [c.ref for c in tasks(first)] == ["P@1.0[0]/A@1.0", "P@1.0[1]/B@1.0"]
    second = advance(compiled, first.state, TaskSucceeded("P@1.0[1]/B@1.0", "b"), env())
    assert second.status == "RUNNING"
    third = advance(compiled, second.state, TaskSucceeded("P@1.0[0]/A@1.0", "a"), env())
    assert third.output == {"x": 1, "branches": ["a", "b"]}
    history = first.history + second.history + third.history
    by_type = {h.type: h for h in history}
    parallel_started = by_type["ParallelStateStarted"]
    entered = [h for h in history if h.type == "TaskStateEntered"]
    assert all(h.previous_event_id == parallel_started.id for h in entered)
    last_branch_event = max(h.id for h in history if h.type == "TaskStateExited")
    assert by_type["ParallelStateSucceeded"].previous_event_id == last_branch_event
    assert by_type["ParallelStateExited"].previous_event_id == last_branch_event


def test_parallel_branch_fail_state_passes_its_error_through() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "End": True,
            "Branches": [
                {
                    "StartAt": "Boom",
                    "States": {"Boom": {"Type": "Fail", "Error": "MyError", "Cause": "my cause"}},
                }
            ],
        }
    )
    done = run(definition, {"x": "a"})
    assert types(done) == [
        "ExecutionStarted",
        "ParallelStateEntered",
        "ParallelStateStarted",
        "FailStateEntered",
        "ParallelStateFailed",
        "ExecutionFailed",
    ]
    assert [h.previous_event_id for h in done.history] == [0, 0, 2, 3, 4, 5]
    assert (done.error, done.cause) == ("MyError", "my cause")


def test_parallel_failure_cancels_sibling_tasks_and_is_catchable() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "Next": "Done",
            "Branches": [
                {
                    "StartAt": "Slow",
                    "States": {
                        "Slow": {
                            "Type": "Task",
                            "Resource": "s",
                            "TimeoutSeconds": 100,
                            "End": True,
                        }
                    },
                },
                {
                    "StartAt": "Bad",
                    "States": {"Bad": {"Type": "Task", "Resource": "b", "End": True}},
                },
            ],
            "Catch": [{"ErrorEquals": ["Oops"], "ResultPath": "$.error", "Next": "Handle"}],
        },
        Handle=PASS_END,
        Done=PASS_END,
    )
    compiled = compile_machine(definition)
    first = advance(compiled, None, Start({"k": 1}), env())
    failed = advance(compiled, first.state, TaskFailed("P@1.0[1]/Bad@1.0", "Oops", "why"), env())
    assert CancelTask("P@1.0[0]/Slow@1.0") in failed.commands
    assert CancelTimer("P@1.0[0]/Slow@1.0:timeout") in failed.commands
    assert failed.output == {"k": 1, "error": {"Error": "Oops", "Cause": "why"}}
    assert types_of(failed) == [
        "TaskFailed",
        "TaskStateAborted",
        "ParallelStateFailed",
        "ParallelStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    late = advance(compiled, failed.state, TaskSucceeded("P@1.0[0]/Slow@1.0", 1), env())
    assert late.ignored


def test_runtime_error_in_branch_fails_execution_directly() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "End": True,
            "Branches": [
                {
                    "StartAt": "Fast",
                    "States": {
                        "Fast": {"Type": "Pass", "Parameters": {"m.$": "$.nope"}, "End": True}
                    },
                }
            ],
        }
    )
    done = run(definition, {"x": "a"})
    assert types(done) == [
        "ExecutionStarted",
        "ParallelStateEntered",
        "ParallelStateStarted",
        "PassStateEntered",
        "ExecutionFailed",
    ]
    assert done.cause == (
        "An error occurred while executing the state 'Fast' (entered at the event id #4). "
        "The JSONPath '$.nope' specified for the field 'm.$' could not be found in the input "
        '\'{"x":"a"}\''
    )


def test_result_path_match_failure_is_catchable() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "ResultPath": "$.x",
            "Next": "Done",
            "Branches": [{"StartAt": "B", "States": {"B": PASS_END}}],
            "Catch": [{"ErrorEquals": ["States.ResultPathMatchFailure"], "Next": "Recover"}],
        },
        Recover=PASS_END,
        Done=PASS_END,
    )
    done = run(definition, "just-a-string")
    assert done.status == "SUCCEEDED"
    assert done.output["Error"] == errors.RESULT_PATH_MATCH_FAILURE
    assert done.output["Cause"].startswith("An error occurred while executing the state 'P'")


# -- Map ------------------------------------------------------------------------------------------


def test_doc_map_example_with_item_selector_and_context() -> None:
    definition = {
        "StartAt": "Validate-All",
        "States": {
            "Validate-All": {
                "Type": "Map",
                "InputPath": "$.detail",
                "ItemsPath": "$.shipped",
                "MaxConcurrency": 0,
                "ItemSelector": {
                    "parcel.$": "$$.Map.Item.Value",
                    "index.$": "$$.Map.Item.Index",
                    "courier.$": "$.delivery-partner",
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Validate",
                    "States": {"Validate": {"Type": "Task", "Resource": LAMBDA, "End": True}},
                },
                "ResultPath": "$.detail.shipped",
                "End": True,
            }
        },
    }
    shipped = [
        {"prod": "R31", "dest-code": 9511, "quantity": 1344},
        {"prod": "S39", "dest-code": 9511, "quantity": 40},
    ]
    state_input = {
        "ship-date": "2016-03-14T01:59:00Z",
        "detail": {"delivery-partner": "UQS", "shipped": shipped},
    }
    done = run(
        definition,
        state_input,
        {"Validate": lambda c: {"ok": c.parameters["index"], "p": c.parameters["courier"]}},
    )
    assert done.output == {
        "ship-date": "2016-03-14T01:59:00Z",
        "detail": {
            "delivery-partner": "UQS",
            "shipped": [{"ok": 0, "p": "UQS"}, {"ok": 1, "p": "UQS"}],
        },
    }
    started = next(h for h in done.history if h.type == "MapStateStarted")
    assert started.to_dict()["mapStateStartedEventDetails"] == {"length": 2}
    iteration = next(h for h in done.history if h.type == "MapIterationStarted")
    assert iteration.to_dict()["mapIterationStartedEventDetails"] == {
        "name": "Validate-All",
        "index": 0,
    }


def test_legacy_iterator_and_parameters() -> None:
    definition = machine(
        M={
            "Type": "Map",
            "ItemsPath": "$.ids",
            "End": True,
            "Parameters": {"id.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
            "Iterator": {"StartAt": "P", "States": {"P": PASS_END}},
        }
    )
    assert run(definition, {"ids": [5, 6]}).output == [{"id": 5, "i": 0}, {"id": 6, "i": 1}]


def test_map_over_no_items_and_non_array() -> None:
    definition = machine(
        M={
            "Type": "Map",
            "ItemsPath": "$.items",
            "End": True,
            "ItemProcessor": {"StartAt": "I", "States": {"I": PASS_END}},
        }
    )
    empty = run(definition, {"items": []})
    assert empty.output == []
    assert types(empty) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    assert [h.previous_event_id for h in empty.history] == [0, 0, 2, 3, 3, 5]
    assert run(definition, {"items": {"a": 1}}).error == errors.RUNTIME


def test_map_respects_max_concurrency() -> None:
    definition = machine(
        M={
            "Type": "Map",
            "MaxConcurrency": 2,
            "End": True,
            "ItemProcessor": {
                "StartAt": "T",
                "States": {"T": {"Type": "Task", "Resource": "t", "End": True}},
            },
        }
    )
    compiled = compile_machine(definition)
    step = advance(compiled, None, Start([10, 11, 12, 13]), env())
    assert [c.ref for c in tasks(step)] == ["M@1.0[0]/T@1.0", "M@1.0[1]/T@1.0"]
    step = advance(compiled, step.state, TaskSucceeded("M@1.0[1]/T@1.0", "b"), env())
    assert [c.ref for c in tasks(step)] == ["M@1.0[2]/T@1.0"]
    step = advance(compiled, step.state, TaskSucceeded("M@1.0[0]/T@1.0", "a"), env())
    assert [c.ref for c in tasks(step)] == ["M@1.0[3]/T@1.0"]
    step = advance(compiled, step.state, TaskSucceeded("M@1.0[2]/T@1.0", "c"), env())
    assert tasks(step) == []
    step = advance(compiled, step.state, TaskSucceeded("M@1.0[3]/T@1.0", "d"), env())
    assert step.output == ["a", "b", "c", "d"]


def test_map_max_concurrency_path_and_iteration_failure() -> None:
    definition = machine(
        M={
            "Type": "Map",
            "MaxConcurrencyPath": "$.limit",
            "ItemsPath": "$.xs",
            "End": True,
            "ItemProcessor": {
                "StartAt": "F",
                "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}},
            },
        }
    )
    done = run(definition, {"limit": 1, "xs": [1, 2]})
    assert types(done) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
        "FailStateEntered",
        "MapIterationFailed",
        "MapStateFailed",
        "ExecutionFailed",
    ]
    assert [h.previous_event_id for h in done.history] == [0, 0, 2, 3, 4, 5, 5, 7]
    assert (done.error, done.cause) == ("E", "c")


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=12), limit=st.integers(0, 4), seed=st.integers(0, 10**6)
)
def test_map_completes_in_any_order_within_concurrency(
    items: list[int], limit: int, seed: int
) -> None:
    """Tasks answered in random order (after JSON round trips): results keep item order, and
    never more than MaxConcurrency tasks are outstanding."""
    compiled = compile_machine(
        machine(
            M={
                "Type": "Map",
                "MaxConcurrency": limit,
                "End": True,
                "ItemProcessor": {
                    "StartAt": "T",
                    "States": {"T": {"Type": "Task", "Resource": "t", "End": True}},
                },
            }
        )
    )
    rng = random.Random(seed)
    step = advance(compiled, None, Start(items), env())
    outstanding = {c.ref: c.parameters for c in tasks(step)}
    while outstanding:
        assert limit == 0 or len(outstanding) <= limit
        ref = rng.choice(sorted(outstanding))
        state = ExecutionState.from_json(step.state.to_json())
        step = advance(compiled, state, TaskSucceeded(ref, outstanding.pop(ref) * 2), env())
        outstanding.update({c.ref: c.parameters for c in tasks(step)})
    assert step.output == [x * 2 for x in items]


# -- Retry / Catch --------------------------------------------------------------------------------


def retry_machine(retry: dict[str, Any], catch: list[dict[str, Any]] | None = None) -> Any:
    state: dict[str, Any] = {"Type": "Task", "Resource": LAMBDA, "Retry": [retry], "End": True}
    if catch:
        state["Catch"] = catch
    return compile_machine(machine(T=state, Handler=PASS_END) if catch else machine(T=state))


def fail_until_exhausted(
    compiled: Any, error: str = "States.Timeout", seed: int = 0
) -> tuple[list[float], Advance]:
    """Fail every attempt; return the retry delays the engine asked for."""
    delays: list[float] = []
    now = T0
    step = advance(compiled, None, Start({"in": 1}), env(seed, now))
    while True:
        (command,) = tasks(step)
        step = advance(compiled, step.state, TaskFailed(command.ref, error, "c"), env(seed, now))
        retry_timers = [t for t in timers(step) if t.purpose == "retry"]
        if not retry_timers:
            return delays, step
        delay = (parse_iso(retry_timers[0].fire_at) - now).total_seconds()
        delays.append(delay)
        now = parse_iso(retry_timers[0].fire_at)
        step = advance(compiled, step.state, TimerFired(retry_timers[0].ref), env(seed, now))


def test_doc_retry_example_backoff_timing() -> None:
    compiled = retry_machine(
        {
            "ErrorEquals": ["States.Timeout"],
            "IntervalSeconds": 3,
            "MaxAttempts": 2,
            "BackoffRate": 1.5,
        }
    )
    delays, final = fail_until_exhausted(compiled)
    assert delays == [3.0, 4.5]
    assert (final.status, final.error) == ("FAILED", "States.Timeout")


def test_retry_defaults_and_max_delay_seconds() -> None:
    delays, _ = fail_until_exhausted(retry_machine({"ErrorEquals": ["States.ALL"]}))
    assert delays == [1.0, 2.0, 4.0]
    capped, _ = fail_until_exhausted(
        retry_machine(
            {
                "ErrorEquals": ["States.ALL"],
                "IntervalSeconds": 2,
                "MaxAttempts": 6,
                "MaxDelaySeconds": 10,
            }
        )
    )
    assert capped == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_full_jitter_delays_are_bounded_and_reproducible() -> None:
    compiled = retry_machine(
        {
            "ErrorEquals": ["States.ALL"],
            "IntervalSeconds": 4,
            "MaxAttempts": 5,
            "JitterStrategy": "FULL",
            "MaxDelaySeconds": 20,
        }
    )
    delays, _ = fail_until_exhausted(compiled, seed=3)
    bounds = [4.0, 8.0, 16.0, 20.0, 20.0]
    assert len(delays) == 5
    assert all(0 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert delays != bounds
    assert fail_until_exhausted(compiled, seed=3)[0] == delays


def test_max_attempts_zero_never_retries_and_goes_to_catch() -> None:
    compiled = retry_machine(
        {"ErrorEquals": ["Boom"], "MaxAttempts": 0},
        [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Handler"}],
    )
    delays, final = fail_until_exhausted(compiled, "Boom")
    assert delays == []
    assert final.output == {"in": 1, "err": {"Error": "Boom", "Cause": "c"}}


def test_task_failed_wildcard_does_not_match_timeout() -> None:
    compiled = retry_machine(
        {"ErrorEquals": ["States.TaskFailed"]},
        [{"ErrorEquals": ["States.TaskFailed"], "Next": "Handler"}],
    )
    delays, final = fail_until_exhausted(compiled, "States.Timeout")
    assert (delays, final.status) == ([], "FAILED")
    delays, final = fail_until_exhausted(compiled, "Lambda.Unknown")
    assert (len(delays), final.status) == (3, "SUCCEEDED")


def test_retry_attempts_get_new_refs_and_stale_results_are_ignored() -> None:
    compiled = retry_machine({"ErrorEquals": ["States.ALL"]})
    first = advance(compiled, None, Start({}), env())
    failed = advance(compiled, first.state, TaskFailed("T@1.0", "E"), env())
    (timer,) = timers(failed)
    assert timer.ref == "T@1.1:retry"
    stale = advance(compiled, failed.state, TaskSucceeded("T@1.0", "late"), env())
    assert stale.ignored
    rerun = advance(compiled, failed.state, TimerFired(timer.ref), env())
    assert [c.ref for c in tasks(rerun)] == ["T@1.1"]
    assert types_of(rerun) == ["TaskScheduled"]  # no second TaskStateEntered


def test_catch_uses_the_first_matching_catcher_and_caught_task_exits() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": LAMBDA,
            "Next": "Unexpected",
            "Catch": [
                {"ErrorEquals": ["Other"], "Next": "Unexpected"},
                {"ErrorEquals": ["States.ALL"], "Next": "Cleanup", "ResultPath": None},
            ],
        },
        Unexpected={"Type": "Fail"},
        Cleanup=PASS_END,
    )

    def failing(command: ScheduleTask) -> Any:
        raise TaskError("Lambda.AWSLambdaException", "Handled")

    done = run(definition, {"fail": True, "cleanupToken": "token-1"}, failing)
    assert done.output == {"fail": True, "cleanupToken": "token-1"}
    assert types(done)[-5:] == [
        "TaskFailed",
        "TaskStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    uncaught = run(machine(T={"Type": "Task", "Resource": LAMBDA, "End": True}), {}, failing)
    assert (uncaught.error, uncaught.cause) == ("Lambda.AWSLambdaException", "Handled")


def test_catcher_result_path_failure_is_not_caught_again() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "End": True,
            "Branches": [{"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "X"}}}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "R", "ResultPath": "$.error"}],
        },
        R=PASS_END,
    )
    assert run(definition, "just-a-string").error == errors.RESULT_PATH_MATCH_FAILURE


def test_parallel_retry_restarts_branches() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "End": True,
            "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}],
            "Branches": [
                {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "MyError"}}}
            ],
        }
    )
    done = run(definition, {})
    assert types(done) == [
        "ExecutionStarted",
        "ParallelStateEntered",
        "ParallelStateStarted",
        "FailStateEntered",
        "ParallelStateStarted",
        "FailStateEntered",
        "ParallelStateFailed",
        "ExecutionFailed",
    ]


# -- timeouts -------------------------------------------------------------------------------------


def test_task_timeout_is_states_timeout_and_retriable() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": LAMBDA,
            "TimeoutSeconds": 5,
            "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1}],
            "End": True,
        }
    )
    calls: list[str] = []

    def never(command: ScheduleTask) -> Any:
        calls.append(command.ref)
        return NO_RESPONSE

    done = run(definition, {}, never)
    assert calls == ["T@1.0", "T@1.1"]
    assert (done.status, done.error) == ("FAILED", "States.Timeout")
    timed_out = [h.to_dict() for h in done.history if h.type == "TaskTimedOut"]
    assert timed_out[0]["taskTimedOutEventDetails"]["error"] == "States.Timeout"


def test_timeout_seconds_path() -> None:
    compiled = compile_machine(
        machine(T={"Type": "Task", "Resource": "r", "TimeoutSecondsPath": "$.t", "End": True})
    )
    step = advance(compiled, None, Start({"t": 42}), env())
    assert tasks(step)[0].timeout_seconds == 42
    assert offset(timers(step)[0]) == 42.0
    bad = advance(compiled, None, Start({"t": 0}), env())
    assert bad.error == errors.RUNTIME


def test_heartbeats_postpone_the_heartbeat_timeout() -> None:
    compiled = compile_machine(
        machine(
            T={
                "Type": "Task",
                "Resource": "r",
                "HeartbeatSeconds": 10,
                "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "H"}],
                "End": True,
            },
            H=PASS_END,
        )
    )
    step = advance(compiled, None, Start({}), env())
    beat = advance(compiled, step.state, TaskHeartbeat("T@1.0"), env(now=T0 + timedelta(seconds=8)))
    assert CancelTimer("T@1.0:heartbeat.0") in beat.commands
    (timer,) = timers(beat)
    assert timer.ref == "T@1.0:heartbeat.1"
    assert advance(compiled, beat.state, TimerFired("T@1.0:heartbeat.0"), env()).ignored
    fired = advance(compiled, beat.state, TimerFired(timer.ref), env())
    assert CancelTask("T@1.0") in fired.commands
    assert fired.output == {"Error": "States.HeartbeatTimeout"}


def test_state_machine_timeout() -> None:
    compiled = compile_machine(
        {**machine(W={"Type": "Wait", "Seconds": 100, "End": True}), "TimeoutSeconds": 30}
    )
    step = advance(compiled, None, Start({}), env())
    assert {(t.ref, offset(t)) for t in timers(step)} == {
        ("$execution:timeout", 30.0),
        ("W@1:wait", 100.0),
    }
    out = advance(compiled, step.state, TimerFired("$execution:timeout"), env())
    assert (out.status, out.error) == ("TIMED_OUT", "States.Timeout")
    assert CancelTimer("W@1:wait") in out.commands
    assert types_of(out) == ["ExecutionTimedOut"]


def test_stop_aborts_and_cancels() -> None:
    compiled = compile_machine(machine(T={"Type": "Task", "Resource": "r", "End": True}))
    step = advance(compiled, None, Start({}), env())
    stopped = advance(compiled, step.state, Stop("Admin", "stopped"), env())
    assert (stopped.status, stopped.error) == ("ABORTED", "Admin")
    assert stopped.commands == [CancelTask("T@1.0")]
    assert advance(compiled, stopped.state, TaskSucceeded("T@1.0", 1), env()).ignored


# -- payload size ---------------------------------------------------------------------------------


def test_oversized_task_result_is_a_catchable_task_failure() -> None:
    big = "x" * (256 * 1024)
    definition = machine(
        T={
            "Type": "Task",
            "Resource": LAMBDA,
            "End": True,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
        },
        H=PASS_END,
    )
    done = run(definition, {}, {"T": big})
    assert done.output == {
        "Error": "States.DataLimitExceeded",
        "Cause": "The state/task 'invoke' returned a result with a size "
        "exceeding the maximum number of bytes service limit.",
    }


def test_oversized_state_output_is_terminal() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": "r",
            "ResultPath": "$.copy",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
            "End": True,
        },
        H=PASS_END,
    )
    half = "x" * (200 * 1024)
    done = run(definition, {"a": half}, {"T": half})
    assert done.error == errors.DATA_LIMIT_EXCEEDED
    too_big_input = run(machine(A=PASS_END), "x" * (256 * 1024 + 1))
    assert too_big_input.error == errors.DATA_LIMIT_EXCEEDED


# -- resumability and idempotency -----------------------------------------------------------------

COMPLEX = {
    "StartAt": "Prepare",
    "TimeoutSeconds": 3600,
    "States": {
        "Prepare": {
            "Type": "Pass",
            "Parameters": {"items.$": "States.ArrayRange(1, 5, 1)", "id.$": "States.UUID()"},
            "Next": "Fan",
        },
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 2,
            "ResultPath": "$.fan",
            "ItemProcessor": {
                "StartAt": "Work",
                "States": {
                    "Work": {
                        "Type": "Task",
                        "Resource": "work",
                        "Retry": [{"ErrorEquals": ["Flaky"], "JitterStrategy": "FULL"}],
                        "Next": "Nap",
                    },
                    "Nap": {"Type": "Wait", "Seconds": 2, "End": True},
                },
            },
            "Next": "Both",
        },
        "Both": {
            "Type": "Parallel",
            "ResultPath": "$.both",
            "Next": "Route",
            "Branches": [
                {
                    "StartAt": "L",
                    "States": {"L": {"Type": "Task", "Resource": "left", "End": True}},
                },
                {"StartAt": "R", "States": {"R": {"Type": "Pass", "Result": "right", "End": True}}},
            ],
        },
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.both[0]", "StringEquals": "left", "Next": "Done"}],
            "Default": "Broken",
        },
        "Broken": {"Type": "Fail", "Error": "Broken"},
        "Done": {"Type": "Succeed"},
    },
}


def flaky_worker() -> Any:
    attempts: dict[str, int] = {}

    def runner(command: ScheduleTask) -> Any:
        if command.resource == "left":
            return "left"
        key = command.ref.split("/")[0]
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1 and command.parameters % 2:
            raise TaskError("Flaky", "try again")
        return command.parameters * 10

    return runner


def test_json_round_trip_between_every_event_gives_the_same_execution() -> None:
    compiled = compile_machine(COMPLEX)
    direct = run_to_completion(compiled, {}, flaky_worker(), env(5))
    persisted = run_to_completion(compiled, {}, flaky_worker(), env(5), json_roundtrip=True)
    assert direct.status == persisted.status == "SUCCEEDED"
    assert direct.output == persisted.output
    assert direct.output["fan"] == [10, 20, 30, 40, 50]
    assert direct.history_dicts() == persisted.history_dicts()
    ids = [h["id"] for h in direct.history_dicts()]
    assert ids == list(range(1, len(ids) + 1))


def test_replaying_every_event_twice_changes_nothing() -> None:
    compiled = compile_machine(COMPLEX)
    reference = run_to_completion(compiled, {}, flaky_worker(), env(5))
    state = None
    history: list[dict[str, Any]] = []
    for event in reference.events:
        first = advance(compiled, state, event, env(5))
        history += [h.to_dict() for h in first.history]
        again = advance(compiled, first.state, event, env(5))
        assert again.ignored or isinstance(event, TaskHeartbeat)
        assert again.history == []
        assert again.commands == []
        assert json.loads(again.state.to_json()) == json.loads(first.state.to_json())
        state = first.state
    assert state is not None
    assert state.status == "SUCCEEDED"
    assert [h["type"] for h in history] == [h["type"] for h in reference.history_dicts()]


def test_start_twice_is_ignored_and_other_events_need_state() -> None:
    compiled = compile_machine(machine(A=PASS_END))
    first = advance(compiled, None, Start({}), env())
    assert advance(compiled, first.state, Start({}), env()).ignored
    with pytest.raises(ValueError, match="needs the execution state"):
        advance(compiled, None, TimerFired("x"), env())


def test_advance_does_not_mutate_its_input_state() -> None:
    compiled = compile_machine(COMPLEX)
    step = advance(compiled, None, Start({}), env())
    before = step.state.to_json()
    ref = tasks(step)[0].ref
    advance(compiled, step.state, TaskSucceeded(ref, 1), env())
    assert step.state.to_json() == before


def test_unknown_task_exception_fails_with_class_name() -> None:
    def broken(command: ScheduleTask) -> Any:
        raise KeyError("k")

    done = run(machine(T={"Type": "Task", "Resource": "r", "End": True}), {}, broken)
    assert done.error == "KeyError"


def test_input_path_null_discards_input() -> None:
    assert run(machine(A={"Type": "Pass", "InputPath": None, "End": True}), {"d": 1}).output == {}


def test_items_path_can_read_the_context_object() -> None:
    definition = machine(
        E={
            "Type": "Map",
            "InputPath": "$.scoped",
            "ItemsPath": "$$.Execution.Input.ids",
            "MaxConcurrency": 1,
            "ItemSelector": {"id.$": "$$.Map.Item.Value"},
            "Iterator": {"StartAt": "P", "States": {"P": PASS_END}},
            "End": True,
        }
    )
    assert run(definition, {"ids": [1, 2], "scoped": {"ignored": True}}).output == [
        {"id": 1},
        {"id": 2},
    ]


def test_heartbeat_seconds_path_and_start_identity() -> None:
    compiled = compile_machine(
        machine(T={"Type": "Task", "Resource": "r", "HeartbeatSecondsPath": "$.hb", "End": True})
    )
    done = run_to_completion(
        compiled,
        {"hb": 7},
        lambda c: c.heartbeat_seconds,
        env(),
        start=Start(None, execution_name="named"),
    )
    assert done.output == 7
    assert done.state.execution.name == "named"
    assert done.state.execution.input == {"hb": 7}


def test_zero_jitter_delay_reruns_without_recursion() -> None:
    """A random source that always returns 0 makes every FULL-jitter delay 0: the retries run
    from the drain loop, so thousands of them do not exhaust the Python stack."""
    definition = machine(
        T={
            "Type": "Task",
            "Resource": "r",
            "End": True,
            "Parameters": {"x.$": "States.ArrayGetItem($.a, 5)"},
            "Retry": [
                {
                    "ErrorEquals": ["States.IntrinsicFailure"],
                    "MaxAttempts": 5000,
                    "JitterStrategy": "FULL",
                }
            ],
        }
    )
    compiled = compile_machine(definition)
    zero = Env(T0, lambda: 0.0, lambda: "u")
    done = advance(compiled, None, Start({"a": []}), zero)
    assert (done.status, done.error) == ("FAILED", errors.INTRINSIC_FAILURE)
    assert done.commands == []


NESTED = {
    "StartAt": "M",
    "TimeoutSeconds": 100,
    "States": {
        "M": {
            "Type": "Map",
            "ItemsPath": "$.xs",
            "MaxConcurrency": 2,
            "Next": "Done",
            "Catch": [{"ErrorEquals": ["Inner"], "ResultPath": "$.err", "Next": "H"}],
            "ItemProcessor": {
                "StartAt": "P",
                "States": {
                    "P": {
                        "Type": "Parallel",
                        "End": True,
                        "Branches": [
                            {
                                "StartAt": "A",
                                "States": {"A": {"Type": "Task", "Resource": "a", "End": True}},
                            },
                            {
                                "StartAt": "B",
                                "States": {"B": {"Type": "Wait", "Seconds": 50, "End": True}},
                            },
                        ],
                    }
                },
            },
        },
        "H": PASS_END,
        "Done": {"Type": "Succeed"},
    },
}


def test_nested_parallel_in_map_failure_propagates_and_cancels_everything() -> None:
    compiled = compile_machine(NESTED)
    step = advance(compiled, None, Start({"xs": [1, 2, 3]}), env())
    assert [c.ref for c in tasks(step)] == ["M@1.0[0]/P@1.0[0]/A@1.0", "M@1.0[1]/P@1.0[0]/A@1.0"]
    failed = advance(
        compiled, step.state, TaskFailed("M@1.0[1]/P@1.0[0]/A@1.0", "Inner", "deep"), env()
    )
    assert failed.output == {"xs": [1, 2, 3], "err": {"Error": "Inner", "Cause": "deep"}}
    assert set(failed.commands) == {
        CancelTask("M@1.0[0]/P@1.0[0]/A@1.0"),
        CancelTimer("M@1.0[0]/P@1.0[1]/B@1:wait"),
        CancelTimer("M@1.0[1]/P@1.0[1]/B@1:wait"),
        CancelTimer("$execution:timeout"),
    }
    assert "MapIterationAborted" in types_of(failed)
    assert failed.state.frames == {}
    timed_out = advance(compiled, step.state, TimerFired("$execution:timeout"), env())
    assert timed_out.status == "TIMED_OUT"
    assert {c.ref for c in timed_out.commands if isinstance(c, CancelTask)} == {
        "M@1.0[0]/P@1.0[0]/A@1.0",
        "M@1.0[1]/P@1.0[0]/A@1.0",
    }
