"""Express state machines: StartSyncExecution runs in-process and answers with the output;
StartExecution runs them asynchronously on a worker; the Standard-only operations refuse them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.bus.models import Event
from app.db import get_database
from tests.integration.workflows.stack import Stack
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADD = "arn:aws:states:::smokehouse:task:wf-add"


def express(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "StartAt": "Add",
        "States": {
            "Add": {"Type": "Task", "Resource": ADD, "ResultPath": "$.result", "Next": "Nap"},
            "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Check"},
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.result.sum", "NumericGreaterThan": 10, "Next": "Big"}],
                "Default": "Small",
            },
            "Big": {"Type": "Pass", "End": True},
            "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "the sum is 10 or less"},
            **(extra or {}),
        },
    }


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_start_sync_execution(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    machine = wf.create(unique, express(), "EXPRESS")
    done = sfn.start_sync_execution(stateMachineArn=machine, input=json.dumps({"a": 8, "b": 9}))
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"a": 8, "b": 9, "result": {"sum": 17}}
    assert ":express:" in done["executionArn"]
    assert (done["stopDate"] - done["startDate"]).total_seconds() >= 0.95  # it waited
    failed = sfn.start_sync_execution(stateMachineArn=machine, input='{"a": 1, "b": 2}')
    assert (failed["status"], failed["error"], failed["cause"]) == (
        "FAILED",
        "TooSmall",
        "the sum is 10 or less",
    )
    with pytest.raises(ClientError) as exc:
        sfn.list_executions(stateMachineArn=machine)
    assert code(exc) == "StateMachineTypeNotSupported"
    with pytest.raises(ClientError) as exc:
        sfn.describe_execution(executionArn=done["executionArn"])
    assert code(exc) == "InvalidArn"


def test_standard_only_and_express_only_operations(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    standard = wf.create(unique, express())
    with pytest.raises(ClientError) as exc:
        sfn.start_sync_execution(stateMachineArn=standard, input="{}")
    assert code(exc) == "StateMachineTypeNotSupported"
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
    with pytest.raises(ClientError) as exc:
        wf.create(f"{unique}-token", token, "EXPRESS")
    assert code(exc) == "InvalidDefinition"
    assert "waitForTaskToken" in exc.value.response["Error"]["Message"]


def test_asynchronous_express_runs_on_a_worker(wf: Stack, unique: str) -> None:
    put = {
        "Put": {
            "Type": "Task",
            "Resource": "arn:aws:states:::events:putEvents",
            "Parameters": {
                "Entries": [
                    {"Source": "test.express", "DetailType": unique, "Detail": {"sum.$": "$.sum"}}
                ]
            },
            "End": True,
        }
    }
    definition = {
        "StartAt": "Add",
        "States": {"Add": {"Type": "Task", "Resource": ADD, "Next": "Put"}, **put},
    }
    machine = wf.create(unique, definition, "EXPRESS")
    arn = wf.start(machine, {"a": 20, "b": 22})
    assert ":express:" in arn

    def announced() -> list[Any]:
        with get_database(wf.settings.sqlalchemy_url).session() as session:
            rows = session.scalars(select(Event).where(Event.detail_type == unique)).all()
            return [r.envelope["detail"] for r in rows]

    wait_for(announced, 30, what="the express execution's event")
    assert announced() == [{"sum": 42}]
