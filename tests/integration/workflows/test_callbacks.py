"""``.waitForTaskToken``: the task gets ``$$.Task.Token``; SendTaskSuccess, SendTaskFailure and
SendTaskHeartbeat complete it or keep it alive; a heartbeat timeout fails it; a token whose task
is over answers ``TaskTimedOut`` — all through boto3 against the durable engine."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.bus.models import Event
from app.db import get_database
from tests.integration.workflows.stack import Stack
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_FOR_TOKEN = "arn:aws:states:::smokehouse:task:wf-ignore.waitForTaskToken"


def callback(**task: Any) -> dict[str, Any]:
    return {
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": WAIT_FOR_TOKEN,
                "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"},
                **task,
                "End": True,
            }
        },
    }


def token_of(wf: Stack, execution: str) -> str:
    """The token, as the task received it (its parameters are in the history)."""
    found: list[str] = []

    def started() -> bool:
        for event in wf.history(execution):
            if event["type"] == "TaskScheduled":
                found.append(json.loads(event["taskScheduledEventDetails"]["parameters"])["token"])
            if event["type"] == "TaskStarted" and found:
                return True
        return False

    wait_for(started, 20, what="the callback task to start")
    return found[0]


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_send_task_success_completes_the_task(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    execution = wf.start(wf.create(unique, callback()), {"order": 7})
    token = token_of(wf, execution)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=token, output=json.dumps({"approved": 7}))
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"approved": 7}
    with pytest.raises(ClientError) as exc:  # the task is over
        sfn.send_task_success(taskToken=token, output="{}")
    assert code(exc) == "TaskTimedOut"
    types = [e["type"] for e in wf.history(execution)]
    assert types.count("TaskStarted") == 1
    assert types[-3:] == ["TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]


def test_send_task_failure_fails_the_task(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    execution = wf.start(wf.create(unique, callback()), {"order": 8})
    sfn.send_task_failure(taskToken=token_of(wf, execution), error="Declined", cause="no stock")
    described = wf.wait(execution)
    assert (described["status"], described["error"], described["cause"]) == (
        "FAILED",
        "Declined",
        "no stock",
    )
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken="3f1d2c4e-0000-4000-8000-000000000000", output="{}")
    assert code(exc) == "TaskDoesNotExist"
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken=token_of(wf, execution), output="{not json")
    assert code(exc) == "InvalidOutput"


def test_heartbeats_keep_the_task_alive(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    machine = wf.create(unique, callback(HeartbeatSeconds=2, TimeoutSeconds=60))
    execution = wf.start(machine, {"order": 9})
    token = token_of(wf, execution)
    for _ in range(4):  # 4 s in all: twice the heartbeat period
        time.sleep(1)
        sfn.send_task_heartbeat(taskToken=token)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=token, output='"late but alive"')
    assert wf.wait(execution)["status"] == "SUCCEEDED"


def test_heartbeat_timeout(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    machine = wf.create(unique, callback(HeartbeatSeconds=1))
    execution = wf.start(machine, {"order": 10})
    token = token_of(wf, execution)
    described = wf.wait(execution, 20)
    assert (described["status"], described["error"]) == ("FAILED", "States.HeartbeatTimeout")
    assert "TaskTimedOut" in [e["type"] for e in wf.history(execution)]
    with pytest.raises(ClientError) as exc:
        sfn.send_task_heartbeat(taskToken=token)
    assert code(exc) == "TaskTimedOut"


def test_stopped_execution_rejects_its_token(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    execution = wf.start(wf.create(unique, callback()), {"order": 11})
    token = token_of(wf, execution)
    sfn.stop_execution(executionArn=execution)
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken=token, output="{}")
    assert code(exc) == "TaskTimedOut"


def test_token_through_the_bus_and_execution_timeout(wf: Stack, unique: str) -> None:
    """putEvents.waitForTaskToken: the token travels in an event on our bus (the classic
    callback pattern); the answer resumes the execution."""
    sfn = wf.client()
    definition = {
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
                "Parameters": {
                    "Entries": [
                        {
                            "Source": "test.approvals",
                            "DetailType": unique,
                            "Detail": {"token.$": "$$.Task.Token", "amount.$": "$.amount"},
                        }
                    ]
                },
                "End": True,
            }
        },
    }
    execution = wf.start(wf.create(unique, definition), {"amount": 12})
    envelopes: list[dict[str, Any]] = []

    def event_put() -> bool:
        with get_database(wf.settings.sqlalchemy_url).session() as session:
            rows = session.scalars(select(Event).where(Event.detail_type == unique)).all()
            envelopes.extend(r.envelope for r in rows)
        return bool(envelopes)

    wait_for(event_put, 20, what="the approval event")
    [envelope] = envelopes
    assert envelope["detail"]["amount"] == 12
    assert execution in envelope["resources"]  # AWS appends the execution's ARN
    sfn.send_task_success(taskToken=envelope["detail"]["token"], output='{"ok": true}')
    assert json.loads(wf.wait(execution)["output"]) == {"ok": True}

    timeout = {"TimeoutSeconds": 1, **callback()}
    timed_out = wf.wait(wf.start(wf.create(f"{unique}-t", timeout), {"order": 1}), 20)
    assert (timed_out["status"], timed_out["error"]) == ("TIMED_OUT", "States.Timeout")
