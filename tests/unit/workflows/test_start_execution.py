"""``states:startExecution``'s pure parts: which definitions may use it, the shapes it answers
(AWS's, as recorded against AWS in LocalStack's ``test_callback.snapshot.json``:
``test_start_execution_sync``, ``_sync2``, ``_sync_delegate_failure``), and how the engine turns
a submitted job into history events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import load_settings
from app.workflows import engine, store
from app.workflows.asl import TaskFailed, TaskStarted, TaskSubmitted, TaskSucceeded, compile_machine
from app.workflows.resources import Submitted, TaskCall, check_definition
from app.workflows.resources.start_execution import (
    START,
    default_name,
    described,
    ended,
    input_text,
    wait_of,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 0, 1, 456000, tzinfo=UTC)


def machine(resource: str) -> Any:
    return compile_machine(
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": resource, "End": True}}}
    )


@pytest.mark.parametrize("suffix", ["", ".sync", ".sync:2", ".waitForTaskToken"])
def test_standard_machines_may_start_executions_every_way(suffix: str) -> None:
    assert check_definition(machine(START + suffix), "STANDARD") == []


def test_express_machines_may_not_wait_for_a_child() -> None:
    [found] = check_definition(machine(f"{START}.sync"), "EXPRESS")
    assert found.message == "Express state machine does not support '.sync' service integration"
    assert check_definition(machine(START), "EXPRESS") == []


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:states:::lambda:invoke.sync",
        "arn:aws:states:::ecs:runTask.sync",
        f"{START}.sync.waitForTaskToken",
        f"{START}.sync:3",
    ],
)
def test_other_sync_integrations_are_refused(resource: str) -> None:
    [found] = check_definition(machine(resource), "STANDARD")
    assert found.code == "SCHEMA_VALIDATION_FAILED"


def test_wait_of() -> None:
    assert [wait_of(START + s) for s in ("", ".sync", ".sync:2")] == [None, "sync", "sync:2"]


def view(status: str, wait: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "arn": "arn:aws:states:us-east-1:000000000000:execution:Child:one",
        "machine_arn": "arn:aws:states:us-east-1:000000000000:stateMachine:Child",
        "name": "one",
        "status": status,
        "start": T0,
        "stop": T1,
        "input_json": '{"n":1}',
        "output": None,
        "error": None,
        "cause": None,
        "wait": wait,
        **extra,
    }
    return described(**values)


def test_sync_describes_the_child_with_json_text() -> None:
    out = view("SUCCEEDED", "sync", output='{"Arg1":"argument1"}')
    assert list(out) == sorted(out)
    assert out["Output"] == '{"Arg1":"argument1"}'
    assert out["Input"] == '{"n":1}'
    assert out["OutputDetails"] == out["InputDetails"] == {"Included": True}
    assert (out["StartDate"], out["StopDate"]) == (
        "2024-05-01T12:00:00.123Z",
        "2024-05-01T12:00:01.456Z",
    )
    assert out["Status"] == "SUCCEEDED"
    assert "Error" not in out


def test_sync2_parses_input_and_output() -> None:
    out = view("SUCCEEDED", "sync:2", output='{"Arg1":"argument1"}')
    assert (out["Input"], out["Output"]) == ({"n": 1}, {"Arg1": "argument1"})


def test_a_child_that_failed_fails_the_task_with_its_description() -> None:
    failed = view("FAILED", "sync", error="SomeFailure", cause="boom")
    outcome = ended({"ExecutionArn": failed["ExecutionArn"]}, failed)
    assert (outcome.done, outcome.error) == (True, "States.TaskFailed")
    cause = json.loads(outcome.cause or "")
    assert (cause["Error"], cause["Cause"], cause["Status"]) == ("SomeFailure", "boom", "FAILED")
    assert "Output" not in cause
    assert list(cause) == sorted(cause)
    succeeded = view("SUCCEEDED", "sync", output="1")
    assert ended(None, succeeded) == Submitted(None, done=True, result=succeeded)


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_input_text_is_what_start_execution_takes(value: Any) -> None:
    text = input_text(value)
    if value is None:
        assert text == "{}"
    elif isinstance(value, str):
        assert text == value
    else:
        assert json.loads(text) == value


def test_the_default_name_is_the_same_for_one_attempt() -> None:
    settings = load_settings()

    def call(ref: str) -> TaskCall:
        return TaskCall(START, {}, settings, "arn:parent", "arn:machine", "Call", ref)

    assert default_name(call("Call@1.1")) == default_name(call("Call@1.1"))
    assert default_name(call("Call@1.1")) != default_name(call("Call@1.2"))
    assert len(default_name(call("x"))) == 36


class Answers:
    kind = "test"
    transactional = False

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def accepts(self, base: str) -> bool:
        return True

    def problem(self, base: str) -> str | None:
        return None

    def run(self, call: TaskCall) -> Any:
        return self.answer


def outcome(answer: Any, token: str | None = None) -> tuple[list[Any], str]:
    claim = store.Claim(1, "A@1.1", START, "A", {}, token, None, 1, T0, "arn:e", "arn:m")
    call = TaskCall(START, {}, load_settings(), "arn:e", "arn:m", "A", "A@1.1", token=token)
    events, status = engine._outcome(claim, Answers(answer), call)
    return [event for event, _ in events], status


def test_a_submitted_job_waits() -> None:
    events, status = outcome(Submitted({"ExecutionArn": "x"}))
    assert events == [TaskStarted("A@1.1"), TaskSubmitted("A@1.1", {"ExecutionArn": "x"})]
    assert status == "waiting"


def test_a_job_over_at_once_ends_the_task() -> None:
    events, status = outcome(Submitted("s", done=True, result={"Status": "SUCCEEDED"}))
    assert events[1:] == [
        TaskSubmitted("A@1.1", "s"),
        TaskSucceeded("A@1.1", {"Status": "SUCCEEDED"}),
    ]
    assert status == "done"
    events, _ = outcome(Submitted("s", done=True, error="States.TaskFailed", cause="{}"))
    assert events[-1] == TaskFailed("A@1.1", "States.TaskFailed", "{}")


def test_a_callback_start_is_submitted_and_waits_for_the_token() -> None:
    events, status = outcome(Submitted("s"), token="tok")
    assert events[-1] == TaskSubmitted("A@1.1", "s")
    assert status == "waiting"
