"""Distributed Map end to end, through boto3 against the app and a real Celery worker, in both
modes (SQLite + SQLAlchemy transport; PostgreSQL + Redis): the children are executions of the
Map Run (ListExecutions(mapRunArn), DescribeExecution's ``mapRunArn``), DescribeMapRun's
counts, ListMapRuns, the failure threshold, ItemReader from S3 and ResultWriter to S3 (moto),
and UpdateMapRun on a running Map Run. Sources: the Step Functions developer guide's
"Using Map state in Distributed mode", "ItemReader (Map)", "ResultWriter (Map)", "Tolerated
failure threshold", and the DescribeMapRun/ListMapRuns/UpdateMapRun API reference."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from sqlalchemy import select

from app.db import get_database
from app.workflows.models import StateMachine
from tests.integration.workflows.stack import Stack
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADD = "arn:aws:states:::smokehouse:task:wf-add"
REJECT = "arn:aws:states:::smokehouse:task:wf-reject"
HOLD = "arn:aws:states:::smokehouse:task:wf-ignore.waitForTaskToken"


def dmap(processor: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    **processor,
                },
                "End": True,
                **fields,
            }
        },
    }


ADDER = {
    "StartAt": "Add",
    "States": {"Add": {"Type": "Task", "Resource": ADD, "End": True}},
}
#: a child that fails when its item says so
MAYBE_REJECT = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.bad", "BooleanEquals": True, "Next": "Reject"}],
            "Default": "Add",
        },
        "Reject": {"Type": "Task", "Resource": REJECT, "End": True},
        "Add": {"Type": "Task", "Resource": ADD, "End": True},
    },
}


def map_run_arn(wf: Stack, execution: str) -> str:
    for event in wf.history(execution):
        if event["type"] == "MapRunStarted":
            arn: str = event["mapRunStartedEventDetails"]["mapRunArn"]
            return arn
    raise AssertionError("no MapRunStarted")


def test_children_are_executions_of_the_map_run(wf: Stack, unique: str) -> None:
    definition = dmap(
        ADDER,
        ItemsPath="$.pairs",
        ItemSelector={"a.$": "$$.Map.Item.Value[0]", "b.$": "$$.Map.Item.Value[1]"},
        MaxConcurrency=2,
        Label="Sums",
    )
    machine = wf.create(unique, definition)
    execution = wf.start(machine, {"pairs": [[1, 2], [3, 4], [5, 6]]})
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == [{"sum": 3}, {"sum": 7}, {"sum": 11}]
    types = [e["type"] for e in wf.history(execution)]
    assert types == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapRunStarted",
        "MapRunSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    client = wf.client()
    run = map_run_arn(wf, execution)
    assert run.startswith(machine.replace(":stateMachine:", ":mapRun:") + "/Sums:")
    described_run = client.describe_map_run(mapRunArn=run)
    assert described_run["status"] == "SUCCEEDED"
    assert described_run["executionArn"] == execution
    assert described_run["maxConcurrency"] == 2
    assert described_run["itemCounts"]["succeeded"] == 3
    assert described_run["itemCounts"]["total"] == 3
    assert described_run["executionCounts"]["succeeded"] == 3
    assert described_run["executionCounts"]["pending"] == 0
    assert "stopDate" in described_run
    [listed] = client.list_map_runs(executionArn=execution)["mapRuns"]
    assert listed["mapRunArn"] == run
    assert listed["stateMachineArn"] == f"{machine}/Sums"
    children = client.list_executions(mapRunArn=run)["executions"]
    assert len(children) == 3
    assert {c["status"] for c in children} == {"SUCCEEDED"}
    assert {c["mapRunArn"] for c in children} == {run}
    assert {c["stateMachineArn"] for c in children} == {f"{machine}/Sums"}
    child = client.describe_execution(executionArn=children[0]["executionArn"])
    assert child["mapRunArn"] == run
    assert child["executionArn"].startswith(
        machine.replace(":stateMachine:", ":execution:") + "/Sums:"
    )
    names = [m["name"] for m in client.list_state_machines()["stateMachines"]]
    assert unique in names
    assert f"{unique}/Sums" not in names  # the Map Run's machine is not listed
    with pytest.raises(client.exceptions.StateMachineDoesNotExist):
        client.start_execution(stateMachineArn=f"{machine}/Sums", input="{}")

    client.delete_state_machine(stateMachineArn=machine)  # its Map Run's machine goes too
    assert machines_named(wf, f"{unique}/") == []


def machines_named(wf: Stack, prefix: str) -> list[str]:
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        return list(
            session.scalars(select(StateMachine.name).where(StateMachine.name.startswith(prefix)))
        )


def test_an_express_map_runs_children_are_counted(wf: Stack, unique: str) -> None:
    """EXPRESS children run in the worker and are not stored (ListExecutions cannot list
    Express executions, as on AWS), yet DescribeMapRun counts them."""
    definition = dmap(ADDER, ItemsPath="$.pairs", Label="Quick")
    definition["States"]["Fan"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "EXPRESS"
    definition["States"]["Fan"]["ItemSelector"] = {
        "a.$": "$$.Map.Item.Value[0]",
        "b.$": "$$.Map.Item.Value[1]",
    }
    execution = wf.start(wf.create(unique, definition), {"pairs": [[1, 1], [2, 2], [3, 3]]})
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == [{"sum": 2}, {"sum": 4}, {"sum": 6}]
    run = wf.client().describe_map_run(mapRunArn=map_run_arn(wf, execution))
    assert run["status"] == "SUCCEEDED"
    for counts in (run["itemCounts"], run["executionCounts"]):
        assert (counts["succeeded"], counts["failed"], counts["total"]) == (3, 0, 3)
        assert (counts["pending"], counts["running"], counts["resultsWritten"]) == (0, 0, 3)


def test_exceeding_the_threshold_fails_the_map(wf: Stack, unique: str) -> None:
    items = [
        {"a": 1, "b": 1, "bad": False},
        {"a": 2, "b": 2, "bad": True},
        {"a": 3, "b": 3, "bad": False},
    ]
    strict = wf.create(unique, dmap(MAYBE_REJECT, MaxConcurrency=1))
    failed = wf.wait(wf.start(strict, items))
    assert failed["status"] == "FAILED"
    assert failed["error"] == "States.ExceedToleratedFailureThreshold"
    run = map_run_arn(wf, failed["executionArn"])
    wait_for(
        lambda: wf.client().describe_map_run(mapRunArn=run)["status"] == "FAILED",
        10,
        what="the Map Run's status",
    )
    tolerant = wf.create(f"{unique}-ok", dmap(MAYBE_REJECT, ToleratedFailureCount=1))
    done = wf.wait(wf.start(tolerant, items))
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output[0] == {"sum": 2}
    assert output[1]["Status"] == "FAILED"
    assert output[1]["Error"] == "OrderRejected"
    assert output[2] == {"sum": 6}
    counts = wf.client().describe_map_run(mapRunArn=map_run_arn(wf, done["executionArn"]))
    assert counts["toleratedFailureCount"] == 1
    assert (counts["itemCounts"]["succeeded"], counts["itemCounts"]["failed"]) == (2, 1)


def test_s3_reader_batches_and_result_writer(wf: Stack, unique: str) -> None:
    s3 = boto3.client("s3")
    bucket = unique.lower().replace("_", "-")[:50]
    s3.create_bucket(Bucket=bucket)
    rows = "a,b\n" + "".join(f"{i},{i}\n" for i in range(5))
    s3.put_object(Bucket=bucket, Key="in/pairs.csv", Body=rows.encode())
    batch_adder = {
        "StartAt": "Add",
        "States": {
            "Add": {
                "Type": "Task",
                "Resource": ADD,
                "Parameters": {"a.$": "$.BatchInput.offset", "b.$": "States.ArrayLength($.Items)"},
                "End": True,
            }
        },
    }
    definition = dmap(
        batch_adder,
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            "Parameters": {"Bucket.$": "$.bucket", "Key": "in/pairs.csv"},
        },
        ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"offset": 100}},
        ResultWriter={
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket.$": "$.bucket", "Prefix": "results"},
        },
    )
    execution = wf.start(wf.create(unique, definition), {"bucket": bucket})
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    run = map_run_arn(wf, execution)
    run_id = run.rsplit(":", 1)[1]
    assert output == {
        "MapRunArn": run,
        "ResultWriterDetails": {"Bucket": bucket, "Key": f"results/{run_id}/manifest.json"},
    }
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=output["ResultWriterDetails"]["Key"])["Body"].read()
    )
    [file] = manifest["ResultFiles"]["SUCCEEDED"]
    written = json.loads(s3.get_object(Bucket=bucket, Key=file["Key"])["Body"].read())
    assert [json.loads(c["Output"]) for c in written] == [{"sum": 102}, {"sum": 102}, {"sum": 101}]
    assert json.loads(written[0]["Input"]) == {
        "BatchInput": {"offset": 100},
        "Items": [{"a": "0", "b": "0"}, {"a": "1", "b": "1"}],
    }
    assert {c["Status"] for c in written} == {"SUCCEEDED"}
    counts = wf.client().describe_map_run(mapRunArn=run)
    assert counts["itemCounts"]["total"] == 5
    assert counts["executionCounts"]["total"] == 3


def test_update_map_run_raises_concurrency(wf: Stack, unique: str) -> None:
    holder = {
        "StartAt": "Hold",
        "States": {
            "Hold": {
                "Type": "Task",
                "Resource": HOLD,
                "Parameters": {"token.$": "$$.Task.Token"},
                "End": True,
            }
        },
    }
    execution = wf.start(wf.create(unique, dmap(holder, MaxConcurrency=1)), [1, 2, 3])
    client = wf.client()
    run = wait_for_run(wf, execution)

    def running() -> int:
        return len(client.list_executions(mapRunArn=run, statusFilter="RUNNING")["executions"])

    wait_for(lambda: running() == 1, 20, what="one running child")
    with pytest.raises(client.exceptions.ValidationException):
        client.update_map_run(mapRunArn=run)
    client.update_map_run(mapRunArn=run, maxConcurrency=3)
    wait_for(lambda: running() == 3, 20, what="three running children")
    assert client.describe_map_run(mapRunArn=run)["maxConcurrency"] == 3
    client.stop_execution(executionArn=execution)
    wait_for(lambda: running() == 0, 20, what="the children stopped with the parent")
    assert client.describe_map_run(mapRunArn=run)["status"] == "ABORTED"
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.describe_map_run(mapRunArn=run[:-4] + "0000")


def wait_for_run(wf: Stack, execution: str) -> str:
    found: list[str] = []

    def started() -> bool:
        runs = wf.client().list_map_runs(executionArn=execution)["mapRuns"]
        found.extend(r["mapRunArn"] for r in runs)
        return bool(runs)

    wait_for(started, 20, what="the Map Run")
    return found[0]
