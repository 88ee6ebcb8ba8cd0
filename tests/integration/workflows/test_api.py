"""The Step Functions API through boto3: state machine CRUD, validation, the errors AWS gives,
idempotent StartExecution, listing and history paging, StopExecution and DescribeStateMachine-
ForExecution after an update."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.bus.models import Event
from app.db import get_database
from app.workflows import definitions
from tests.integration.workflows.stack import ROLE, Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": True}}}


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_state_machine_lifecycle(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    arn = wf.create(unique, PASS)
    assert arn == f"arn:aws:states:us-east-1:000000000000:stateMachine:{unique}"
    # Same name, definition and type again: idempotent, as on AWS.
    assert wf.create(unique, PASS) == arn
    with pytest.raises(ClientError) as exc:
        wf.create(unique, WAIT)
    assert code(exc) == "StateMachineAlreadyExists"

    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert described["name"] == unique
    assert described["type"] == "STANDARD"
    assert described["status"] == "ACTIVE"
    assert json.loads(described["definition"]) == PASS
    assert described["roleArn"] == ROLE

    updated = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(WAIT))
    assert updated["revisionId"] != described["revisionId"]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]) == WAIT

    names = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
    assert unique in names
    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as exc:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert code(exc) == "StateMachineDoesNotExist"
    assert "State Machine Does Not Exist" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "definition", "expected"),
    [
        ("bad name", PASS, "InvalidName"),
        ("ok", {"StartAt": "Nope", "States": {}}, "InvalidDefinition"),
        (
            "ok",
            {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:x", "End": True}}},
            "InvalidDefinition",
        ),
    ],
)
def test_create_refuses_what_aws_refuses(
    wf: Stack, name: str, definition: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ClientError) as exc:
        wf.create(name, definition)
    assert code(exc) == expected


def test_invalid_definition_message_names_the_problem(wf: Stack) -> None:
    with pytest.raises(ClientError) as exc:
        wf.create("broken", {"StartAt": "A", "States": {"A": {"Type": "Pass"}}})
    assert exc.value.response["Error"]["Message"].startswith("Invalid State Machine Definition")


def test_validate_state_machine_definition(wf: Stack) -> None:
    sfn = wf.client()
    ok = sfn.validate_state_machine_definition(definition=json.dumps(PASS))
    assert ok["result"] == "OK"
    assert ok["diagnostics"] == []
    token = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::smokehouse:task:echo.waitForTaskToken",
                "End": True,
            }
        },
    }
    express = sfn.validate_state_machine_definition(definition=json.dumps(token), type="EXPRESS")
    assert express["result"] == "FAIL"
    assert express["diagnostics"][0]["location"] == "/States/T/Resource"
    bad = sfn.validate_state_machine_definition(definition='{"StartAt": 1}')
    assert bad["result"] == "FAIL"


def test_unknown_things_answer_aws_errors(wf: Stack) -> None:
    sfn = wf.client()
    missing = "arn:aws:states:us-east-1:000000000000:stateMachine:missing"
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=missing)
    assert code(exc) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as exc:
        sfn.describe_execution(executionArn=missing)
    assert code(exc) == "InvalidArn"
    with pytest.raises(ClientError) as exc:
        sfn.describe_execution(
            executionArn="arn:aws:states:us-east-1:000000000000:execution:missing:x"
        )
    assert code(exc) == "ExecutionDoesNotExist"
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken="not-a-token", output="{}")
    assert code(exc) == "InvalidToken"


def test_start_execution_is_idempotent_per_name_and_input(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    machine = wf.create(unique, WAIT)
    first = wf.start(machine, {"a": 1}, name="once")
    assert wf.start(machine, {"a": 1}, name="once") == first
    with pytest.raises(ClientError) as exc:
        wf.start(machine, {"a": 2}, name="once")
    assert code(exc) == "ExecutionAlreadyExists"
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=machine, input="{not json")
    assert code(exc) == "InvalidExecutionInput"
    sfn.stop_execution(executionArn=first, error="Manual", cause="test over")


def test_list_and_history_paging_and_stop(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    machine = wf.create(unique, WAIT)
    arns = [wf.start(machine, {"i": i}, name=f"e{i}") for i in range(3)]
    page = sfn.list_executions(stateMachineArn=machine, maxResults=2)
    assert len(page["executions"]) == 2
    rest = sfn.list_executions(stateMachineArn=machine, nextToken=page["nextToken"])
    listed = {e["executionArn"] for e in page["executions"] + rest["executions"]}
    assert listed == set(arns)

    stopped = sfn.stop_execution(executionArn=arns[0], error="Halt", cause="enough")
    assert stopped["stopDate"]
    described = sfn.describe_execution(executionArn=arns[0])
    assert (described["status"], described["error"], described["cause"]) == (
        "ABORTED",
        "Halt",
        "enough",
    )
    aborted = sfn.list_executions(stateMachineArn=machine, statusFilter="ABORTED")
    assert [e["executionArn"] for e in aborted["executions"]] == [arns[0]]

    history = sfn.get_execution_history(executionArn=arns[0], maxResults=2)
    assert [e["id"] for e in history["events"]] == [1, 2]
    more = sfn.get_execution_history(executionArn=arns[0], nextToken=history["nextToken"])
    types = [e["type"] for e in history["events"] + more["events"]]
    assert types == ["ExecutionStarted", "WaitStateEntered", "ExecutionAborted"]
    newest = sfn.get_execution_history(executionArn=arns[0], reverseOrder=True, maxResults=1)
    assert newest["events"][0]["type"] == "ExecutionAborted"
    assert newest["events"][0]["executionAbortedEventDetails"] == {
        "error": "Halt",
        "cause": "enough",
    }
    for arn in arns[1:]:
        sfn.stop_execution(executionArn=arn)


def test_an_execution_keeps_its_definition_after_an_update(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    machine = wf.create(unique, WAIT)
    execution = wf.start(machine)
    sfn.update_state_machine(stateMachineArn=machine, definition=json.dumps(PASS))
    used = sfn.describe_state_machine_for_execution(executionArn=execution)
    assert json.loads(used["definition"]) == WAIT
    assert wf.wait(wf.start(machine), 20)["status"] == "SUCCEEDED"  # new ones get the update
    sfn.stop_execution(executionArn=execution)


def test_status_changes_are_bus_events(wf: Stack, unique: str) -> None:
    machine = wf.create(unique, PASS)
    execution = wf.start(machine, {"hello": "bus"})
    assert wf.wait(execution)["status"] == "SUCCEEDED"
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        events = session.scalars(
            select(Event).where(Event.detail_type == "Step Functions Execution Status Change")
        ).all()
        mine = [e.envelope for e in events if e.envelope["resources"] == [execution]]
    assert [e["detail"]["status"] for e in mine] == ["RUNNING", "SUCCEEDED"]
    detail = mine[1]["detail"]
    assert detail["stateMachineArn"] == machine
    assert json.loads(detail["input"]) == {"hello": "bus"}
    assert json.loads(detail["output"]) == {"hello": "bus"}
    assert mine[0]["source"] == "smokehouse.states"


def test_the_shipped_hello_world_runs(wf: Stack) -> None:
    """What start-up registers (``definitions.apply_all``) runs as shipped: Pass, a 1 s Wait on
    a durable timer, Succeed."""
    report = definitions.apply_all(wf.settings)
    assert "hello-world" in report.created + report.unchanged
    machine = "arn:aws:states:us-east-1:000000000000:stateMachine:hello-world"
    described = wf.wait(wf.start(machine, {"name": "smokehouse"}), 30)
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["greeting"] == "Hello, smokehouse!"
    assert output["startedAt"].endswith("Z")
