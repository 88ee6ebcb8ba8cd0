"""The ``POST /`` endpoint end to end: real boto3 clients against a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from app.auth import AccessKey, KeyRing
from app.aws.errors import JSON_1_0, JSON_1_1
from tests.unit.aws.fake_ops import CREATED, ClientFactory, State
from tests.unit.aws.signing import ADMIN, VIEWER, sign


def error_of(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response: dict[str, Any] = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_read_operation_parsed_by_boto3(aws_client: ClientFactory, server_state: State) -> None:
    response = aws_client("events").list_rules(NamePrefix="probe")
    rule = response["Rules"][0]
    assert rule["Name"] == "probe-hot"
    assert rule["Arn"] == "arn:aws:events:eu-west-1:000000000000:rule/probe-hot"
    assert json.loads(rule["EventPattern"]) == {"source": ["smokehouse.iot"]}
    params, call = server_state.calls[-1]
    assert params == {"NamePrefix": "probe"}
    assert (call.key, call.region, call.account_id, call.operation) == (
        ADMIN,
        "eu-west-1",
        "000000000000",
        "AWSEvents.ListRules",
    )
    assert call.request_id == response["ResponseMetadata"]["RequestId"]
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == JSON_1_1


def test_write_operation_with_admin_key(aws_client: ClientFactory, server_state: State) -> None:
    events = aws_client("events", region="ap-southeast-2")
    response = events.put_rule(Name="alarm", EventPattern='{"source": ["a"]}', State="ENABLED")
    assert response["RuleArn"] == "arn:aws:events:ap-southeast-2:000000000000:rule/alarm"
    assert server_state.calls[-1][0]["Name"] == "alarm"


def test_step_functions_json_1_0_and_timestamps(aws_client: ClientFactory) -> None:
    sfn = aws_client("stepfunctions")
    response = sfn.list_state_machines()
    machine = response["stateMachines"][0]
    assert machine["name"] == "enrich"
    assert abs(machine["creationDate"] - CREATED) < timedelta(milliseconds=1)
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == JSON_1_0
    started = sfn.start_execution(stateMachineArn="arn:aws:states:::stateMachine:enrich", name="e1")
    assert abs(started["startDate"] - CREATED) < timedelta(milliseconds=1)


def test_viewer_may_read_but_not_write(aws_client: ClientFactory, server_state: State) -> None:
    events = aws_client("events", key=VIEWER)
    assert events.list_rules()["Rules"]
    with pytest.raises(ClientError) as caught:
        events.put_rule(Name="nope", ScheduleExpression="rate(1 minute)")
    code, message, status = error_of(caught)
    assert (code, status) == ("AccessDeniedException", 400)
    assert "not authorized to perform: events:PutRule" in message
    assert all(params.get("Name") != "nope" for params, _ in server_state.calls)
    with pytest.raises(ClientError) as caught:
        aws_client("stepfunctions", key=VIEWER).start_execution(stateMachineArn="arn:x")
    assert error_of(caught)[0] == "AccessDeniedException"


def test_wrong_secret(aws_client: ClientFactory) -> None:
    with pytest.raises(ClientError) as caught:
        aws_client("events", secret="wrong").list_rules()
    code, message, status = error_of(caught)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith(
        "The request signature we calculated does not match the signature you provided."
    )


def test_unknown_key(aws_client: ClientFactory) -> None:
    with pytest.raises(ClientError) as caught:
        aws_client("events", key=AccessKey("AKIDNOBODY", "x", "admin")).list_rules()
    assert error_of(caught) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        400,
    )


def test_domain_error_is_the_modeled_exception(aws_client: ClientFactory) -> None:
    events = aws_client("events")
    with pytest.raises(events.exceptions.ResourceNotFoundException) as caught:
        events.describe_rule(Name="missing")
    assert error_of(caught) == (
        "ResourceNotFoundException",
        "Rule missing does not exist on EventBus default.",
        400,
    )
    headers = caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert caught.value.response["ResponseMetadata"]["RequestId"]


def test_handler_crash_is_an_internal_error_and_logged(
    aws_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    events = aws_client("events")
    with (
        caplog.at_level(logging.ERROR, logger="app.aws.protocol"),
        pytest.raises(events.exceptions.InternalException) as caught,
    ):
        events.delete_rule(Name="r")
    code, message, status = error_of(caught)
    assert (code, status) == ("InternalException", 500)
    assert "on fire" not in message
    request_id = caught.value.response["ResponseMetadata"]["RequestId"]
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)
    assert events.list_rules()["Rules"]  # and the server keeps serving


def test_handler_returning_a_non_dict_is_an_internal_error(aws_client: ClientFactory) -> None:
    with pytest.raises(ClientError) as caught:
        aws_client("events").test_event_pattern(EventPattern="{}", Event="{}")
    assert error_of(caught)[0::2] == ("InternalException", 500)


def test_step_functions_internal_failure_code(aws_client: ClientFactory) -> None:
    with pytest.raises(ClientError) as caught:
        aws_client("stepfunctions").delete_state_machine(stateMachineArn="arn:x")
    assert error_of(caught)[0::2] == ("InternalFailure", 500)


def test_unregistered_operation(aws_client: ClientFactory) -> None:
    with pytest.raises(ClientError) as caught:
        aws_client("events").list_archives()
    assert error_of(caught)[0::2] == ("UnknownOperationException", 400)


def test_server_clock_skew(aws_client: ClientFactory, server_state: State) -> None:
    server_state.skew = timedelta(minutes=20)
    with pytest.raises(ClientError) as caught:
        aws_client("events").list_rules()
    code, message, _ = error_of(caught)
    assert code == "InvalidSignatureException"
    assert message.startswith("Signature expired: ")
    assert message.endswith(" - 15 min.)")


def test_keys_are_read_per_request(aws_client: ClientFactory, server_state: State) -> None:
    rotated = AccessKey(ADMIN.id, "rotated-secret", "admin")
    server_state.keyring = KeyRing((rotated,))
    with pytest.raises(ClientError) as caught:
        aws_client("events").list_rules()
    assert error_of(caught)[0] == "InvalidSignatureException"
    assert aws_client("events", secret="rotated-secret").list_rules()["Rules"]


# --- Raw HTTP: what boto3 never sends. -------------------------------------------------------


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(trust_env=False) as http:
        return http.post(url + "/", content=body, headers=headers)


def signed_post(
    url: str,
    body: bytes,
    target: str,
    *,
    content_type: str = JSON_1_1,
    service: str = "events",
    key: AccessKey = ADMIN,
) -> httpx.Response:
    prepared = sign(
        url=url + "/",
        body=body,
        headers={"Content-Type": content_type, "X-Amz-Target": target},
        service=service,
        key=key,
    )
    return post(url, body, dict(prepared.headers.items()))


def assert_aws_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-ErrorType"] == code
    assert response.headers["x-amzn-RequestId"]
    document: dict[str, Any] = response.json()
    assert document["__type"] == code
    return document


def test_missing_authorization(live_server: str, server_state: State) -> None:
    response = post(
        live_server, b"{}", {"Content-Type": JSON_1_1, "X-Amz-Target": "AWSEvents.ListRules"}
    )
    document = assert_aws_error(response, 400, "MissingAuthenticationTokenException")
    assert document["message"] == "Request is missing Authentication Token"
    assert response.headers["content-type"] == JSON_1_1
    assert server_state.calls == []


def test_malformed_authorization(live_server: str) -> None:
    response = post(
        live_server,
        b"{}",
        {
            "Content-Type": JSON_1_0,
            "X-Amz-Target": "AWSStepFunctions.ListStateMachines",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID",
            "X-Amz-Date": "20240101T000000Z",
        },
    )
    assert_aws_error(response, 400, "IncompleteSignatureException")
    assert response.headers["content-type"] == JSON_1_0


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_body_must_be_a_json_object(live_server: str, body: bytes) -> None:
    response = signed_post(live_server, body, "AWSEvents.ListRules")
    assert_aws_error(response, 400, "SerializationException")


def test_signing_service_must_match_the_target(live_server: str) -> None:
    response = signed_post(live_server, b"{}", "AWSEvents.ListRules", service="states")
    document = assert_aws_error(response, 400, "InvalidSignatureException")
    assert document["message"] == "Credential should be scoped to correct service: 'events'. "


@pytest.mark.parametrize(
    "target", ["", "AWSEvents", "AWSEvents.NoSuchThing", "DynamoDB_20120810.Scan"]
)
def test_unknown_target(live_server: str, target: str) -> None:
    response = signed_post(live_server, b"{}", target)
    assert_aws_error(response, 400, "UnknownOperationException")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_other_content_types_are_not_aws_json(live_server: str, content_type: str) -> None:
    response = signed_post(live_server, b"{}", "AWSEvents.ListRules", content_type=content_type)
    assert_aws_error(response, 404, "UnknownOperationException")


def test_content_type_parameters_are_ignored(live_server: str) -> None:
    response = signed_post(
        live_server, b"{}", "AWSEvents.ListRules", content_type=JSON_1_1 + "; charset=utf-8"
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_1_1


def test_aws_json_shapes_for_python_values(live_server: str) -> None:
    response = signed_post(
        live_server,
        b"{}",
        "AWSStepFunctions.DescribeExecution",
        content_type=JSON_1_0,
        service="states",
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "whole": 3,
        "part": 1.5,
        "blob": "AP8=",
        "set": ["a", "b"],
        "when": CREATED.timestamp(),  # epoch seconds, as AWS JSON protocols send timestamps
    }
