"""Task resources end to end on real workers: AWS SDK calls through boto3 (against moto) with
Step Functions' error names, the HTTP Task, and events:putEvents onto our own bus."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from app.bus.models import Event
from app.db import get_database
from tests.integration.workflows.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def task(resource: str, parameters: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": resource, "Parameters": parameters, **more}


def caught(errors: list[str], next_state: str = "Caught") -> list[dict[str, Any]]:
    return [{"ErrorEquals": errors, "ResultPath": "$.error", "Next": next_state}]


def run(wf: Stack, name: str, states: dict[str, Any], data: Any = None) -> dict[str, Any]:
    definition = {"StartAt": next(iter(states)), "States": states}
    described = wf.wait(wf.start(wf.create(name, definition), data or {}), 60)
    assert described["status"] == "SUCCEEDED", described
    result: dict[str, Any] = json.loads(described["output"])
    return result


def test_aws_sdk_through_boto3_with_aws_error_names(wf: Stack, unique: str) -> None:
    bucket = unique.lower().replace("_", "-")[:50]
    states = {
        "Create": task(
            "arn:aws:states:::aws-sdk:s3:createBucket", {"Bucket": bucket}, ResultPath=None
        ),
        "Put": task(
            "arn:aws:states:::aws-sdk:s3:putObject",
            {"Bucket": bucket, "Key": "k", "Body": "hello"},
            ResultPath=None,
        ),
        "Get": task(
            "arn:aws:states:::aws-sdk:s3:getObject",
            {"Bucket": bucket, "Key": "k"},
            ResultSelector={"body.$": "$.Body"},
            ResultPath="$.got",
        ),
        "Missing": task(
            "arn:aws:states:::aws-sdk:s3:getObject",
            {"Bucket": bucket, "Key": "nope"},
            ResultPath="$.never",
            Catch=caught(["S3.NoSuchKeyException"], "Ec2"),
        ),
        "Ec2": task(
            "arn:aws:states:::aws-sdk:ec2:describeInstances",
            {"InstanceIds": ["i-1234567890abcdef0"]},
            ResultPath="$.never",
            Catch=[{"ErrorEquals": ["Ec2.Ec2Exception"], "ResultPath": "$.ec2", "Next": "Done"}],
        ),
        "Done": {"Type": "Succeed"},
    }
    for name, state in states.items():
        if "Next" not in state and "Catch" not in state and name != "Done":
            state["Next"] = list(states)[list(states).index(name) + 1]
    states["Missing"]["Next"] = "Ec2"
    states["Ec2"]["Next"] = "Done"
    out = run(wf, unique, states)
    assert out["got"] == {"body": "hello"}
    assert out["error"]["Error"] == "S3.NoSuchKeyException"
    assert "(Service: S3, Status Code: 404" in out["error"]["Cause"]
    assert out["ec2"]["Error"] == "Ec2.Ec2Exception"
    assert "(Service: Ec2, Status Code: 400" in out["ec2"]["Cause"]


class _Api(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else None
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"message": "no such order"}')
            return
        answer = {"method": self.command, "path": self.path, "body": body}
        answer["auth"] = self.headers.get("x-api-key")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-served-by", "test")
        self.end_headers()
        self.wfile.write(json.dumps(answer).encode())

    do_GET = do_POST = _answer  # noqa: N815 - the names http.server calls

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_task(wf: Stack, unique: str, api_url: str) -> None:
    states = {
        "Call": task(
            "arn:aws:states:::http:invoke",
            {
                "ApiEndpoint.$": "$.url",
                "Method": "POST",
                "Headers": {"x-api-key": "k1"},
                "QueryParameters": {"order.$": "States.Format('{}', $.order)"},
                "RequestBody": {"order.$": "$.order"},
            },
            ResultPath="$.call",
            Next="Missing",
        ),
        "Missing": task(
            "arn:aws:states:::http:invoke",
            {"ApiEndpoint.$": "States.Format('{}/missing', $.url)", "Method": "GET"},
            # ErrorEquals: ["States.Http.StatusCode.404"] once the validator accepts that name.
            Catch=caught(["States.TaskFailed"]),
            End=True,
        ),
        "Caught": {"Type": "Pass", "End": True},
    }
    out = run(wf, unique, states, {"url": api_url, "order": 42})
    call = out["call"]
    assert (call["StatusCode"], call["StatusText"]) == (200, "OK")
    assert call["Headers"]["x-served-by"] == ["test"]
    assert call["ResponseBody"] == {
        "method": "POST",
        "path": "/?order=42",
        "body": '{"order":42}',
        "auth": "k1",
    }
    assert out["error"]["Error"] == "States.Http.StatusCode.404"
    assert json.loads(out["error"]["Cause"])["ResponseBody"] == {"message": "no such order"}


def test_put_events_on_our_bus(wf: Stack, unique: str) -> None:
    states = {
        "Put": task(
            "arn:aws:states:::events:putEvents",
            {
                "Entries": [
                    {"Source": "test.wf", "DetailType": unique, "Detail": {"n.$": "$.n"}},
                    {"Source": "test.wf", "DetailType": unique, "Detail": {"n": 2}},
                ]
            },
            ResultPath="$.put",
            Next="Fail",
        ),
        "Fail": task(
            "arn:aws:states:::events:putEvents",
            {"Entries": [{"Source": "x", "DetailType": "y", "Detail": {}, "EventBusName": "nope"}]},
            Catch=caught(["EventBridge.FailedEntry"]),
            End=True,
        ),
        "Caught": {"Type": "Pass", "End": True},
    }
    out = run(wf, unique, states, {"n": 1})
    assert out["put"]["FailedEntryCount"] == 0
    ids = [entry["EventId"] for entry in out["put"]["Entries"]]
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        events = session.scalars(select(Event).where(Event.detail_type == unique)).all()
    assert sorted(e.id for e in events) == sorted(ids)
    assert sorted(e.envelope["detail"]["n"] for e in events) == [1, 2]
    assert all(e.envelope["resources"][0].startswith("arn:aws:states:") for e in events)
    assert out["error"]["Error"] == "EventBridge.FailedEntry"
    assert json.loads(out["error"]["Cause"])["FailedEntryCount"] == 1


def test_lambda_tasks_run_registered_handlers_on_a_real_worker(wf: Stack, unique: str) -> None:
    """A Standard execution, on a real worker, of the Lambda forms AWS definitions use."""
    states = {
        "Invoke": task(
            "arn:aws:states:::lambda:invoke",
            {"FunctionName": "wf-add", "Payload": {"a.$": "$.a", "b": 2}},
            ResultSelector={"sum.$": "$.Payload.sum", "status.$": "$.StatusCode"},
            ResultPath="$.invoked",
            Next="Bare",
        ),
        "Bare": task(
            "arn:aws:lambda:us-east-1:000000000000:function:wf-add",
            {"a.$": "$.invoked.sum", "b": 10},
            ResultPath="$.bare",
            Next="Missing",
        ),
        "Missing": task(
            "arn:aws:states:::lambda:invoke",
            {"FunctionName": "no-such-function", "Payload": {}},
            Catch=caught(["Lambda.ResourceNotFoundException"]),
            End=True,
        ),
        "Caught": {"Type": "Pass", "End": True},
    }
    out = run(wf, unique, states, {"a": 1})
    assert out["invoked"] == {"sum": 3, "status": 200}
    assert out["bare"]["sum"] == 13
    assert out["error"]["Error"] == "Lambda.ResourceNotFoundException"
