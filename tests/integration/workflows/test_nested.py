"""Nested executions: ``arn:aws:states:::states:startExecution`` (request-response), ``.sync``
(the child's DescribeExecution with ``Output`` as JSON text), ``.sync:2`` (parsed), a failing
child as ``States.TaskFailed`` with that description as the cause (AWS's shape, as recorded
against AWS in LocalStack's ``test_callback.snapshot.json``), stopping the parent or timing its
task out stops the child, a task run twice starts one child, and a lost wake-up of the parent is
recovered by the sweeper — through boto3 against the app and a real worker, both modes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from app.db import get_database
from app.workflows import callbacks, dispatch, engine
from app.workflows.models import Execution, ExecutionTask
from app.workflows.sweep import sweep
from tests.integration.workflows.stack import Stack
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = "arn:aws:states:::states:startExecution"
ECHO = "arn:aws:states:::smokehouse:task:echo"
WAIT_FOR_TOKEN = "arn:aws:states:::smokehouse:task:wf-ignore.waitForTaskToken"

CHILD_OK = {
    "StartAt": "Echo",
    "States": {
        "Echo": {"Type": "Task", "Resource": ECHO, "Next": "Done"},
        "Done": {
            "Type": "Pass",
            "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"},
            "End": True,
        },
    },
}
CHILD_FAILS = {
    "StartAt": "Echo",
    "States": {
        "Echo": {"Type": "Task", "Resource": ECHO, "Next": "Boom"},
        "Boom": {"Type": "Fail", "Error": "SomeFailure", "Cause": "the child failed"},
    },
}
CHILD_WAITS = {
    "StartAt": "Hold",
    "States": {
        "Hold": {
            "Type": "Task",
            "Resource": WAIT_FOR_TOKEN,
            "Parameters": {"token.$": "$$.Task.Token"},
            "End": True,
        }
    },
}


def parent(resource: str, child: str, **task: Any) -> dict[str, Any]:
    handled = {"Handled": {"Type": "Pass", "End": True}} if "Next" in task else {}
    return {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": resource,
                "Parameters": {
                    "StateMachineArn": child,
                    "Input": {
                        "n.$": "$.n",
                        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
                    },
                },
                **task,
                **({} if "Next" in task else {"End": True}),
            },
            **handled,
        },
    }


def children(wf: Stack, machine: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wf.client().list_executions(stateMachineArn=machine)["executions"]
    return found


def one_child(wf: Stack, machine: str, status: str = "RUNNING") -> dict[str, Any]:
    wait_for(
        lambda: [c["status"] for c in children(wf, machine)] == [status],
        20,
        what=f"one {status} child",
    )
    return children(wf, machine)[0]


def token_of(wf: Stack, execution: str) -> str:
    found: list[str] = []

    def scheduled() -> bool:
        for event in wf.history(execution):
            if event["type"] == "TaskScheduled":
                found.append(json.loads(event["taskScheduledEventDetails"]["parameters"])["token"])
                return True
        return False

    wait_for(scheduled, 20, what="the child's callback task")
    return found[0]


def task_row(wf: Stack, execution_arn: str) -> ExecutionTask:
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        row = session.execute(
            select(ExecutionTask)
            .join(Execution, Execution.id == ExecutionTask.execution_id)
            .where(Execution.arn == execution_arn, ExecutionTask.kind == "task")
        ).scalar_one()
        session.expunge(row)
        return row


def waiting(wf: Stack, execution_arn: str) -> ExecutionTask:
    wait_for(lambda: task_row(wf, execution_arn).status == "waiting", 20, what="a waiting task")
    return task_row(wf, execution_arn)


def test_sync_answers_the_child_description_with_output_as_text(wf: Stack, unique: str) -> None:
    child = wf.create(f"{unique}-child", CHILD_OK)
    execution = wf.start(wf.create(unique, parent(f"{START}.sync", child)), {"n": 21})
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED"
    out = json.loads(described["output"])
    assert sorted(out) == [
        "ExecutionArn",
        "Input",
        "InputDetails",
        "Name",
        "Output",
        "OutputDetails",
        "RedriveCount",
        "RedriveStatus",
        "RedriveStatusReason",
        "StartDate",
        "StateMachineArn",
        "Status",
        "StopDate",
    ]
    assert isinstance(out["Output"], str)
    assert json.loads(out["Output"]) == {"doubled": 42}
    assert isinstance(out["Input"], str)
    assert json.loads(out["Input"]) == {
        "n": 21,
        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": execution,
    }
    assert (out["Status"], out["StateMachineArn"]) == ("SUCCEEDED", child)
    assert out["InputDetails"] == out["OutputDetails"] == {"Included": True}
    assert out["StartDate"].endswith("Z")
    assert out["StopDate"] >= out["StartDate"]
    [only] = children(wf, child)
    assert (only["executionArn"], only["status"]) == (out["ExecutionArn"], "SUCCEEDED")
    events = wf.history(execution)
    types = [e["type"] for e in events]
    i = types.index("TaskStarted")
    assert types[i : i + 3] == ["TaskStarted", "TaskSubmitted", "TaskSucceeded"]
    submitted = events[i + 1]["taskSubmittedEventDetails"]
    assert (submitted["resourceType"], submitted["resource"]) == ("states", "startExecution.sync")
    answer = json.loads(submitted["output"])
    assert sorted(answer) == ["ExecutionArn", "SdkHttpMetadata", "SdkResponseMetadata", "StartDate"]
    assert answer["ExecutionArn"] == out["ExecutionArn"]
    assert task_row(wf, execution).status == "done"


def test_sync2_parses_input_and_output(wf: Stack, unique: str) -> None:
    child = wf.create(f"{unique}-child", CHILD_OK)
    machine = wf.create(unique, parent(f"{START}.sync:2", child))
    described = wf.wait(wf.start(machine, {"n": 5}))
    assert described["status"] == "SUCCEEDED"
    out = json.loads(described["output"])
    assert out["Output"] == {"doubled": 10}
    assert out["Input"]["n"] == 5


def test_request_response_answers_start_execution(wf: Stack, unique: str) -> None:
    child = wf.create(f"{unique}-child", CHILD_WAITS)
    execution = wf.start(wf.create(unique, parent(START, child)), {"n": 1})
    described = wf.wait(execution)  # the parent does not wait for the child
    assert described["status"] == "SUCCEEDED"
    out = json.loads(described["output"])
    assert sorted(out) == ["ExecutionArn", "SdkHttpMetadata", "SdkResponseMetadata", "StartDate"]
    started = one_child(wf, child)
    assert started["executionArn"] == out["ExecutionArn"]
    wf.client().stop_execution(executionArn=started["executionArn"])


def test_failing_child_fails_the_task_as_aws_reports_it(wf: Stack, unique: str) -> None:
    child = wf.create(f"{unique}-child", CHILD_FAILS)
    uncaught = wf.start(wf.create(unique, parent(f"{START}.sync", child)), {"n": 1})
    described = wf.wait(uncaught)
    assert (described["status"], described["error"]) == ("FAILED", "States.TaskFailed")
    cause = json.loads(described["cause"])
    assert (cause["Status"], cause["Error"], cause["Cause"]) == (
        "FAILED",
        "SomeFailure",
        "the child failed",
    )
    assert "Output" not in cause
    assert cause["StateMachineArn"] == child
    caught = parent(
        f"{START}.sync",
        child,
        Catch=[{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Handled"}],
        Next="Handled",
    )
    handled = wf.wait(wf.start(wf.create(f"{unique}-c", caught), {"n": 2}))
    assert handled["status"] == "SUCCEEDED"
    error = json.loads(handled["output"])["error"]
    assert error["Error"] == "States.TaskFailed"
    assert json.loads(error["Cause"])["Error"] == "SomeFailure"


def test_stopping_the_parent_stops_the_child(wf: Stack, unique: str) -> None:
    child = wf.create(f"{unique}-child", CHILD_WAITS)
    execution = wf.start(wf.create(unique, parent(f"{START}.sync", child)), {"n": 1})
    started = one_child(wf, child)
    waiting(wf, execution)
    wf.client().stop_execution(executionArn=execution, error="Enough", cause="operator")
    assert wf.wait(execution)["status"] == "ABORTED"
    assert wf.wait(started["executionArn"])["status"] == "ABORTED"


def test_task_timeout_stops_the_child(wf: Stack, unique: str) -> None:
    child = wf.create(f"{unique}-child", CHILD_WAITS)
    machine = wf.create(unique, parent(f"{START}.sync:2", child, TimeoutSeconds=1))
    execution = wf.start(machine, {"n": 1})
    described = wf.wait(execution, 20)
    assert (described["status"], described["error"]) == ("FAILED", "States.Timeout")
    assert wf.wait(one_child(wf, child, "ABORTED")["executionArn"])["status"] == "ABORTED"


def test_sync_of_an_express_child_runs_it_to_its_end(wf: Stack, unique: str) -> None:
    quick = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": 1}, "End": True}}}
    child = wf.create(f"{unique}-child", quick, "EXPRESS")
    described = wf.wait(wf.start(wf.create(unique, parent(f"{START}.sync:2", child)), {"n": 1}))
    assert described["status"] == "SUCCEEDED"
    out = json.loads(described["output"])
    assert (out["Status"], out["Output"], out["StateMachineArn"]) == ("SUCCEEDED", {"ok": 1}, child)
    assert out["ExecutionArn"].startswith(child.replace(":stateMachine:", ":express:"))
    fire = wf.wait(wf.start(wf.create(f"{unique}-f", parent(START, child)), {"n": 1}))
    assert json.loads(fire["output"])["ExecutionArn"].startswith(
        child.replace(":stateMachine:", ":express:")
    )


def test_a_task_run_twice_starts_one_child(wf: Stack, unique: str) -> None:
    """The task is delivered again (a lapsed claim, a duplicate message): it reports the child
    it started, it does not start another."""
    child = wf.create(f"{unique}-child", CHILD_WAITS)
    execution = wf.start(wf.create(unique, parent(f"{START}.sync", child)), {"n": 3})
    started = one_child(wf, child)
    row = waiting(wf, execution)
    database = get_database(wf.settings.sqlalchemy_url)

    def reschedule() -> None:  # as if its claim had lapsed
        with database.session() as session:
            session.execute(
                update(ExecutionTask)
                .where(ExecutionTask.execution_id == row.execution_id, ExecutionTask.ref == row.ref)
                .values(status="scheduled")
            )

    for _ in range(2):  # run again here, twice
        reschedule()
        assert engine.run_task(wf.settings, row.execution_id, row.ref) == "ran"
    reschedule()  # and sent twice to the worker
    dispatch.send(wf.settings, [(row.execution_id, row.ref), (row.execution_id, row.ref)])
    waiting(wf, execution)
    time.sleep(1)
    assert [c["executionArn"] for c in children(wf, child)] == [started["executionArn"]]
    assert task_row(wf, execution).status == "waiting"
    types = [e["type"] for e in wf.history(execution)]
    assert types.count("TaskSubmitted") == types.count("TaskStarted") == 1
    token = token_of(wf, started["executionArn"])
    wf.client().send_task_success(taskToken=token, output=json.dumps({"ok": 3}))
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(json.loads(described["output"])["Output"]) == {"ok": 3}


def test_a_lost_wake_up_is_sent_again_by_the_sweeper(
    wf: Stack, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's end commits with the parent's task rescheduled, and the message that would
    run it is lost (the worker died right after the commit): the sweeper sends it again."""
    child = wf.create(f"{unique}-child", CHILD_WAITS)
    execution = wf.start(wf.create(unique, parent(f"{START}.sync:2", child)), {"n": 4})
    started = one_child(wf, child)
    waiting(wf, execution)
    token = token_of(wf, started["executionArn"])
    with monkeypatch.context() as patch:
        patch.setattr(dispatch, "send", lambda *args, **kwargs: 0)  # every send lost
        callbacks.send_success(wf.settings, token, json.dumps({"late": True}))
    assert wf.wait(started["executionArn"])["status"] == "SUCCEEDED"
    assert task_row(wf, execution).status == "scheduled"  # the durable half of the wake-up
    assert wf.client().describe_execution(executionArn=execution)["status"] == "RUNNING"
    time.sleep(wf.settings.workflow_sweep_grace_seconds + 0.5)
    sweep(wf.settings)
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["Output"] == {"late": True}


def test_the_sweeper_stops_a_child_its_parent_left(wf: Stack, unique: str) -> None:
    """The parent's stop committed but the worker died before stopping the child."""
    child = wf.create(f"{unique}-child", CHILD_WAITS)
    execution = wf.start(wf.create(unique, parent(f"{START}.sync", child)), {"n": 1})
    started = one_child(wf, child)
    row = waiting(wf, execution)
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        session.execute(
            update(ExecutionTask)
            .where(ExecutionTask.execution_id == row.execution_id, ExecutionTask.ref == row.ref)
            .values(status="cancelled")
        )
    sweep(wf.settings)
    assert wf.wait(started["executionArn"])["status"] == "ABORTED"
    wf.client().stop_execution(executionArn=execution)
