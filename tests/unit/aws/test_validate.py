"""Request parameters checked against botocore's models, in AWS's server wording."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app.aws.errors import AwsError
from app.aws.operations import AwsCall, AwsOperations
from app.aws.protocol import aws_router
from app.aws.validate import RequestValidator, member_path, service_model
from tests.unit.aws.signing import KEYS
from tests.unit.aws.test_limits import signed_headers

NAME = r"[\.\-_A-Za-z0-9]+"


def problem(service: str, operation: str, params: dict[str, Any], **options: Any) -> AwsError:
    with pytest.raises(AwsError) as caught:
        RequestValidator.for_operation(service, operation, **options)(params)
    return caught.value


def message(service: str, operation: str, params: dict[str, Any], **options: Any) -> str:
    error = problem(service, operation, params, **options)
    assert (error.code, error.status) == ("ValidationException", 400)
    return error.message


def test_models_load_once_per_service() -> None:
    assert service_model("events") is service_model("events")
    assert service_model("stepfunctions").metadata["targetPrefix"] == "AWSStepFunctions"


def test_a_request_that_fits_passes() -> None:
    RequestValidator.for_operation("events", "PutRule")(
        {"Name": "r", "EventPattern": "{}", "State": "ENABLED", "Unknown": [1, 2]}
    )


def test_required_member() -> None:
    assert message("events", "DescribeRule", {}) == (
        "1 validation error detected: Value null at 'name' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_json_null_counts_as_missing() -> None:
    assert "Value null at 'name'" in message("events", "DescribeRule", {"Name": None})


def test_lengths() -> None:
    assert message("events", "DescribeArchive", {"ArchiveName": "a" * 49}).endswith(
        "Value '" + "a" * 49 + "' at 'archiveName' failed to satisfy constraint: "
        "Member must have length less than or equal to 48"
    )


def test_empty_string_breaks_minimum_and_pattern() -> None:
    assert message("events", "DescribeRule", {"Name": ""}) == (
        "2 validation errors detected: "
        "Value '' at 'name' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value '' at 'name' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {NAME}"
    )


def test_several_errors_at_once_in_model_order() -> None:
    """The wording of tests/integration/bus/test_api_rules.py, word for word."""
    assert message("events", "PutRule", {"State": "SOMETIMES", "Name": "no spaces!"}) == (
        "2 validation errors detected: "
        "Value 'no spaces!' at 'name' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; "
        "Value 'SOMETIMES' at 'state' failed to satisfy constraint: Member must satisfy enum "
        "value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]"
    )


def test_enum_order_can_follow_the_server() -> None:
    order = ("HEAD", "POST", "PATCH", "DELETE", "PUT", "GET", "OPTIONS")
    text = message(
        "events",
        "UpdateApiDestination",
        {"Name": "d", "HttpMethod": "BREW"},
        enums={"ApiDestinationHttpMethod": order},
    )
    assert text.endswith("Member must satisfy enum value set: [" + ", ".join(order) + "]")


def test_numeric_range() -> None:
    assert message("events", "ListRules", {"Limit": 101}) == (
        "1 validation error detected: Value '101' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 100"
    )
    assert "have value greater than or equal to 1" in message("events", "ListRules", {"Limit": 0})


def test_list_lengths_and_members() -> None:
    assert message("events", "RemoveTargets", {"Rule": "r", "Ids": []}).endswith(
        "at 'ids' failed to satisfy constraint: Member must have length greater than or equal to 1"
    )
    assert message("events", "RemoveTargets", {"Rule": "r", "Ids": ["ok", "no way"]}) == (
        "1 validation error detected: Value 'no way' at 'ids.2.member' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {NAME}"
    )


def test_nested_structures_in_lists() -> None:
    text = message(
        "events",
        "PutTargets",
        {"Rule": "r", "Targets": [{"Id": "a", "Arn": "x"}, {"Id": "b" * 65}]},
    )
    assert text == (
        "2 validation errors detected: "
        "Value '" + "b" * 65 + "' at 'targets.2.member.id' failed to satisfy constraint: "
        "Member must have length less than or equal to 64; "
        "Value null at 'targets.2.member.arn' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_nested_structure() -> None:
    params = {
        "ReplayName": "r",
        "EventSourceArn": "arn:aws:events:us-east-1:000000000000:archive/a",
        "EventStartTime": 0,
        "EventEndTime": "2024-01-01T00:00:00Z",
        "Destination": {"FilterArns": []},
    }
    assert message("events", "StartReplay", params) == (
        "1 validation error detected: Value null at 'destination.arn' failed to satisfy "
        "constraint: Member must not be null"
    )


def test_shallow_members_are_left_to_the_handler() -> None:
    params = {
        "Name": "c",
        "AuthorizationType": "API_KEY",
        "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "k"}},
    }
    assert "apiKeyValue" in message("events", "CreateConnection", params)
    RequestValidator.for_operation("events", "CreateConnection", shallow=["AuthParameters"])(params)


def test_sensitive_values_are_not_echoed() -> None:
    text = message("stepfunctions", "SendTaskSuccess", {"taskToken": "t", "output": "x" * 262145})
    assert text == (
        "1 validation error detected: Value at 'output' failed to satisfy constraint: "
        "Member must have length less than or equal to 262144"
    )


def test_step_functions_members_are_camel_case_already() -> None:
    assert message("stepfunctions", "StartExecution", {"name": "x" * 81}) == (
        "2 validation errors detected: "
        "Value null at 'stateMachineArn' failed to satisfy constraint: Member must not be null; "
        "Value '" + "x" * 81 + "' at 'name' failed to satisfy constraint: "
        "Member must have length less than or equal to 80"
    )


def test_java_only_pattern_classes_are_translated() -> None:
    ok = {"stateMachineArn": "arn", "traceHeader": "Root=1"}
    RequestValidator.for_operation("stepfunctions", "StartExecution")(ok)
    text = message("stepfunctions", "StartExecution", {**ok, "traceHeader": "é"})
    assert "Member must satisfy regular expression pattern: \\p{ASCII}*" in text


@pytest.mark.parametrize(
    ("operation", "params", "wording"),
    [
        ("DeleteRule", {"Name": 5}, "Value at 'name' must be a string."),
        ("DeleteRule", {"Name": "r", "Force": "yes"}, "Value at 'force' must be a boolean."),
        ("ListRules", {"Limit": "5"}, "Value at 'limit' must be an integer."),
        ("ListRules", {"Limit": True}, "Value at 'limit' must be an integer."),
        ("PutTargets", {"Rule": "r", "Targets": {}}, "Value at 'targets' must be a list."),
    ],
)
def test_wrong_types_are_serialization_errors(
    operation: str, params: dict[str, Any], wording: str
) -> None:
    error = problem("events", operation, params)
    assert (error.code, error.message) == ("SerializationException", wording)


def test_list_members_of_the_wrong_type() -> None:
    error = problem("events", "RemoveTargets", {"Rule": "r", "Ids": ["a", 1]})
    assert (error.code, error.message) == (
        "SerializationException",
        "Members of 'ids' must be strings.",
    )
    error = problem("events", "PutTargets", {"Rule": "r", "Targets": ["a"]})
    assert error.message == "Members of 'targets' must be objects."


def test_bad_timestamps() -> None:
    error = problem(
        "events",
        "StartReplay",
        {
            "ReplayName": "r",
            "EventSourceArn": "arn:aws:events:us-east-1:000000000000:archive/a",
            "EventStartTime": "yesterday",
            "EventEndTime": 0,
            "Destination": {"Arn": "a"},
        },
    )
    assert (error.code, error.message) == (
        "SerializationException",
        "Value at 'eventStartTime' must be a timestamp.",
    )


def outcome(operation: str, params: dict[str, Any]) -> str | None:
    """The ValidationException's message, or ``None`` when the request passes."""
    try:
        RequestValidator.for_operation("events", operation)(params)
    except AwsError as error:
        return error.message
    return None


@given(st.text(max_size=80))
def test_rule_names_agree_with_the_pattern(name: str) -> None:
    """Any name is refused exactly when it breaks the model's length or pattern, and the count
    in the message is the number of problems listed, each naming the member."""
    fits = 1 <= len(name) <= 64 and re.fullmatch(NAME, name, re.ASCII) is not None
    text = outcome("DescribeRule", {"Name": name})
    assert (text is None) == fits
    if text is not None:
        count = int(text.split(" ", 1)[0])
        assert count == text.count("failed to satisfy constraint") >= 1
        assert text.count(f"at '{member_path('Name')}' failed") == count


@given(st.integers(min_value=-1000, max_value=1000))
def test_limits_agree_with_the_range(limit: int) -> None:
    text = outcome("ListRules", {"Limit": limit})
    assert (text is None) == (1 <= limit <= 100)
    if text is not None:
        assert text.startswith(f"1 validation error detected: Value '{limit}' at 'limit'")


def test_the_endpoint_checks_before_the_handler_runs() -> None:
    """Through the router: a bad request is answered from the model, the handler never runs."""
    seen: list[dict[str, Any]] = []
    operations = AwsOperations()

    @operations.operation("AWSEvents", "ListRules", write=False)
    def list_rules(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        seen.append(params)
        return {"Rules": []}

    app = FastAPI()
    app.include_router(aws_router(operations, lambda: KEYS))
    with TestClient(app) as client:
        bad = b'{"Limit": 101}'
        response = client.post("/", content=bad, headers=signed_headers(bad))
        assert response.status_code == 400
        assert response.json() == {
            "__type": "ValidationException",
            "message": "1 validation error detected: Value '101' at 'limit' failed to satisfy "
            "constraint: Member must have value less than or equal to 100",
        }
        good = b'{"Limit": 5}'
        assert client.post("/", content=good, headers=signed_headers(good)).status_code == 200
    assert seen == [{"Limit": 5}]
