"""The operation registry: registration rules and lookup."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth import AccessKey
from app.aws.operations import AwsCall, AwsOperations, registry


def handler(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return {}


def test_register_and_look_up() -> None:
    operations = AwsOperations()
    decorated = operations.operation("AWSEvents", "PutRule", write=True)(handler)
    assert decorated is handler
    operation = operations.get("AWSEvents.PutRule")
    assert operation is not None
    assert (operation.target, operation.service, operation.write) == (
        "AWSEvents.PutRule",
        "events",
        True,
    )
    assert "AWSEvents.PutRule" in operations
    assert operations.get("AWSEvents.ListRules") is None
    assert [op.name for op in operations] == ["PutRule"]
    assert len(operations) == 1


def test_step_functions_sign_as_states() -> None:
    operations = AwsOperations()
    operations.operation("AWSStepFunctions", "StartExecution", write=True)(handler)
    operation = operations.get("AWSStepFunctions.StartExecution")
    assert operation is not None
    assert operation.service == "states"


def test_twice_is_an_error() -> None:
    operations = AwsOperations()
    operations.operation("AWSEvents", "PutRule", write=True)(handler)
    with pytest.raises(ValueError, match="registered twice"):
        operations.operation("AWSEvents", "PutRule", write=False)(handler)


@pytest.mark.parametrize(
    ("prefix", "name", "problem"),
    [
        ("DynamoDB_20120810", "Scan", "unknown target prefix"),
        ("AWSEvents", "Put.Rule", "identifier"),
    ],
)
def test_bad_names(prefix: str, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AwsOperations().operation(prefix, name, write=False)


def test_a_coroutine_handler_is_registered_as_it_is() -> None:
    async def waits(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        return {}

    operations = AwsOperations()
    operations.operation("AmazonSQS", "ReceiveMessage", write=True)(waits)
    found = operations.get("AmazonSQS.ReceiveMessage")
    assert found is not None
    assert (found.handler, found.service) == (waits, "sqs")


def test_call_builds_arns_in_its_region_and_account() -> None:
    call = AwsCall(AccessKey("a", "s", "admin"), "eu-west-1", "000000000000", "rid", "AWSEvents.X")
    assert call.arn("events", "rule/r") == "arn:aws:events:eu-west-1:000000000000:rule/r"


def test_process_registry_exists() -> None:
    assert isinstance(registry, AwsOperations)
