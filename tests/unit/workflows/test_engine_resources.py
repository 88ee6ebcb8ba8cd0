"""Resources, names and shapes the engine relies on: Step Functions' error names for SDK
errors, handler failures as Lambda reports them, create-time resource checks, ARNs, the status
event's detail, and the in-process Express driver."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from app.aws.errors import AwsError
from app.config import load_settings
from app.handlers import handler, load_handler_modules
from app.workflows import arns, express, machines
from app.workflows.asl import Start, TaskError, compile_machine
from app.workflows.resources import TaskCall, check_definition
from app.workflows.resources.aws_sdk import AwsSdkResource, boto_service, error_name, pascal_service
from app.workflows.resources.handler import HandlerResource
from app.workflows.status import StatusChange, detail


class Declined(Exception):
    pass


@handler("unit-declines")
def declines(payload: Any, context: Any) -> Any:
    raise Declined("card declined")


@handler("unit-double")
def double(payload: Any, context: Any) -> Any:
    return {"n": payload["n"] * 2, "id": context.invocation_id}


def call(resource: str, parameters: Any = None) -> TaskCall:
    return TaskCall(
        resource=resource,
        parameters=parameters,
        settings=load_settings(),
        execution_arn="arn:aws:states:us-east-1:000000000000:execution:m:e",
        state_machine_arn="arn:aws:states:us-east-1:000000000000:stateMachine:m",
        state_name="S",
        ref="S@1.0",
    )


@pytest.mark.parametrize(
    ("service_id", "prefix"),
    [("EC2", "Ec2"), ("S3", "S3"), ("DynamoDB", "DynamoDb"), ("ACM PCA", "AcmPca"), ("SFN", "Sfn")],
)
def test_service_prefixes_follow_step_functions(service_id: str, prefix: str) -> None:
    assert pascal_service(service_id) == prefix


def test_integration_service_names_map_to_boto3() -> None:
    assert boto_service("ec2") == "ec2"
    assert boto_service("sfn") == "stepfunctions"
    assert boto_service("eventbridge") == "events"


def test_sdk_error_names() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    assert error_name(s3, "NoSuchKey") == "S3.NoSuchKeyException"
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert error_name(ec2, "InvalidInstanceID.NotFound") == "Ec2.Ec2Exception"
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    assert error_name(dynamodb, "ConditionalCheckFailedException") == (
        "DynamoDb.ConditionalCheckFailedException"
    )


def test_sdk_errors_become_task_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto3.client("ec2", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_instances",
        service_error_code="InvalidInstanceID.NotFound",
        service_message="The instance ID 'i-1' does not exist",
        http_status_code=400,
    )
    monkeypatch.setattr("app.workflows.resources.aws_sdk._client", lambda _service: client)
    with stubber, pytest.raises(TaskError) as exc:
        AwsSdkResource().run(call("arn:aws:states:::aws-sdk:ec2:describeInstances", {}))
    assert exc.value.error == "Ec2.Ec2Exception"
    assert exc.value.cause is not None
    assert exc.value.cause.startswith("The instance ID 'i-1' does not exist (Service: Ec2, ")


def test_handler_failures_read_like_lambdas() -> None:
    with pytest.raises(TaskError) as exc:
        HandlerResource().run(call("arn:aws:states:::smokehouse:task:unit-declines", {}))
    assert exc.value.error == "Declined"
    assert json.loads(exc.value.cause or "") == {
        "errorMessage": "card declined",
        "errorType": "Declined",
    }
    out = HandlerResource().run(call("arn:smokehouse:handler:unit-double", {"n": 2}))
    assert out == {"n": 4, "id": "arn:aws:states:us-east-1:000000000000:execution:m:e#S@1.0"}
    with pytest.raises(TaskError) as exc:
        HandlerResource().run(call("arn:smokehouse:handler:nobody", {}))
    assert exc.value.error == "States.TaskFailed"


def test_unsupported_resources_are_refused_at_create_time() -> None:
    def machine(resource: str) -> Any:
        return compile_machine(
            {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": resource, "End": True}}}
        )

    assert (
        check_definition(machine("arn:aws:states:::aws-sdk:ec2:describeInstances"), "STANDARD")
        == []
    )
    # a Lambda function is a registered handler now (checked when the task runs)
    assert check_definition(machine("arn:aws:lambda:us-east-1:1:function:f"), "STANDARD") == []
    [bad] = check_definition(machine("arn:aws:sqs:us-east-1:1:not-a-task"), "STANDARD")
    assert bad.location == "/States/T/Resource"
    [bad] = check_definition(machine("arn:aws:states:::aws-sdk:ec2:noSuchAction"), "STANDARD")
    assert "noSuchAction" in bad.message
    token = machine("arn:aws:states:::smokehouse:task:echo.waitForTaskToken")
    assert check_definition(token, "STANDARD") == []
    assert check_definition(token, "EXPRESS")[0].code == "SCHEMA_VALIDATION_FAILED"
    with pytest.raises(AwsError) as exc:
        machines.check(
            '{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "x", "End": true}}}',
            "STANDARD",
            aws_sdk_allow="",
        )
    assert exc.value.code == "InvalidDefinition"


def test_arns_and_names() -> None:
    assert arns.state_machine_name("arn:aws:states:eu-west-1:123456789012:stateMachine:m") == "m"
    ref = arns.execution_ref("arn:aws:states:eu-west-1:123456789012:execution:m:e")
    assert (ref.kind, ref.machine, ref.name) == ("execution", "m", "e")
    for bad in ("nope", "arn:aws:states:eu-west-1:123456789012:activity:a"):
        with pytest.raises(AwsError) as exc:
            arns.state_machine_name(bad)
        assert exc.value.code == "InvalidArn"
    for name in ("has space", "a:b", "", "x" * 81):
        with pytest.raises(AwsError):
            arns.check_name(name)


def test_status_detail_is_aws_shaped() -> None:
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    change = StatusChange("e-arn", "sm-arn", "e", "SUCCEEDED", start, start, '{"a":1}', '{"b":2}')
    assert detail(change) == {
        "executionArn": "e-arn",
        "stateMachineArn": "sm-arn",
        "name": "e",
        "status": "SUCCEEDED",
        "startDate": 1714564800000,
        "stopDate": 1714564800000,
        "input": '{"a":1}',
        "output": '{"b":2}',
        "inputDetails": {"included": True},
        "outputDetails": {"included": True},
        "error": None,
        "cause": None,
    }


def test_express_waits_on_the_real_clock_and_times_tasks_out() -> None:
    load_handler_modules()
    definition = {
        "StartAt": "Nap",
        "States": {
            "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Double"},
            "Double": {
                "Type": "Task",
                "Resource": "arn:aws:states:::smokehouse:task:unit-double",
                "End": True,
            },
        },
    }
    began = time.monotonic()
    result = express.run(load_settings(), compile_machine(definition), Start({"n": 21}))
    assert time.monotonic() - began >= 0.95
    assert result.status == "SUCCEEDED"
    assert result.output["n"] == 42


@pytest.mark.parametrize(
    "reference",
    [
        "unit-double",
        "unit-double:live",
        "000000000000:function:unit-double",
        "arn:aws:lambda:us-east-1:000000000000:function:unit-double",
        "arn:aws:lambda:us-east-1:000000000000:function:unit-double:7",
    ],
)
def test_lambda_function_names_as_aws_accepts_them(reference: str) -> None:
    from app.workflows.resources.lambda_invoke import function_name

    assert function_name(reference) == "unit-double"


def test_the_seeds_lambda_tasks_run_registered_handlers_with_lambdas_shapes() -> None:
    """A definition written for AWS -- ``lambda:invoke`` with ``Payload.$`` and
    ``OutputPath: $.Payload``, a bare function ARN, a Catch on the function's error type --
    runs unchanged against registered handlers."""
    load_handler_modules()
    definition = {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "unit-double", "Payload.$": "$"},
                "ResultPath": "$.invoked",
                "Next": "Bare",
            },
            "Bare": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:000000000000:function:unit-double",
                "Parameters": {"n.$": "$.invoked.Payload.n"},
                "ResultPath": "$.bare",
                "Next": "Declines",
            },
            "Declines": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:unit-declines",
                    "Payload": {},
                },
                "Catch": [{"ErrorEquals": ["Declined"], "ResultPath": "$.error", "Next": "Done"}],
                "End": True,
            },
            "Done": {"Type": "Pass", "End": True},
        },
    }
    assert check_definition(compile_machine(definition), "EXPRESS") == []
    result = express.run(load_settings(), compile_machine(definition), Start({"n": 21}))
    assert result.status == "SUCCEEDED", result
    invoked = result.output["invoked"]
    assert invoked["StatusCode"] == 200
    assert invoked["ExecutedVersion"] == "$LATEST"
    assert invoked["Payload"]["n"] == 42
    assert result.output["bare"]["n"] == 84  # a bare ARN answers the function's result itself
    assert result.output["error"]["Error"] == "Declined"
    assert json.loads(result.output["error"]["Cause"]) == {
        "errorMessage": "card declined",
        "errorType": "Declined",
    }


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({"FunctionName": "no-such-function", "Payload": {}}, "Lambda.ResourceNotFoundException"),
        ({"Payload": {}}, "States.Runtime"),
        (
            {"FunctionName": "unit-double", "InvocationType": "Later"},
            "Lambda.InvalidParameterValueException",
        ),
    ],
)
def test_lambda_invoke_errors_are_lambdas(parameters: dict[str, Any], error: str) -> None:
    from app.workflows.resources.lambda_invoke import LambdaResource

    load_handler_modules()
    with pytest.raises(TaskError) as caught:
        LambdaResource().run(call("arn:aws:states:::lambda:invoke", parameters))
    assert caught.value.error == error


def test_lambda_invocation_types() -> None:
    from app.workflows.resources.lambda_invoke import LambdaResource

    load_handler_modules()
    resource = LambdaResource()
    base = {"FunctionName": "unit-double", "Payload": {"n": 1}}
    event = resource.run(
        call("arn:aws:states:::lambda:invoke", {**base, "InvocationType": "Event"})
    )
    assert (event["StatusCode"], event["Payload"]) == (202, "")
    dry = resource.run(call("arn:aws:states:::lambda:invoke", {**base, "InvocationType": "DryRun"}))
    assert dry["StatusCode"] == 204


def test_an_express_map_runs_tasks_under_express_rules() -> None:
    """A distributed Map's EXPRESS children are Express executions: their Tasks may not wait
    for a token, run a .sync child or name an activity, even in a Standard machine."""

    def fan(execution_type: str, resource: str) -> list[str]:
        processor = {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
            "StartAt": "T",
            "States": {"T": {"Type": "Task", "Resource": resource, "End": True}},
        }
        definition = {
            "StartAt": "F",
            "States": {"F": {"Type": "Map", "ItemProcessor": processor, "End": True}},
        }
        return [d.message for d in check_definition(compile_machine(definition), "STANDARD")]

    activity = "arn:aws:states:us-east-1:123456789012:activity:trim"
    for resource in (
        "arn:aws:states:::smokehouse:task:echo.waitForTaskToken",
        "arn:aws:states:::states:startExecution.sync",
        activity,
    ):
        assert fan("STANDARD", resource) == [], resource
        [problem] = fan("EXPRESS", resource)
        assert problem.startswith("Express state machine does not support"), problem
