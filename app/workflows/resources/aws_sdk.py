"""``arn:aws:states:::aws-sdk:<service>:<action>``: any AWS API call, generically through boto3.

``<service>`` is the SDK integration's name (``ec2``, ``s3``, ``sfn``, ``eventbridge``...) or
boto3's (``stepfunctions``, ``events``); ``<action>`` is camelCase (``describeInstances``) and
becomes boto3's ``describe_instances``. Parameters are passed as they are (PascalCase, as the
API names them). Endpoint, region and credentials come from AWS's standard configuration
(``AWS_ENDPOINT_URL_EC2``, ``AWS_DEFAULT_REGION``, ...), which is how tests point this at moto.

Errors are named the way Step Functions names them (developer guide, "AWS SDK service
integrations"): ``<Service>.<ErrorName>`` in PascalCase, with an ``Exception`` suffix added when
the service's error does not have one — ``S3.NoSuchKeyException``,
``DynamoDb.ConditionalCheckFailedException``. Errors the service does not model (all of EC2's,
e.g. ``InvalidInstanceID.NotFound``) arrive as ``<Service>.<Service>Exception``
(``Ec2.Ec2Exception``) with the code in the cause, as on AWS; the cause reads
``<message> (Service: Ec2, Status Code: 400, Request ID: <id>)``.

**Deny by default.** The server's credentials are behind every call, so only the actions the
shipped state machines need are allowed (:data:`DEFAULT_ALLOW`: EC2 run/terminate/describe
instances and tags); ``SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW`` adds more (``ec2:describeImages``,
``s3:*``). A definition naming another action is refused by CreateStateMachine /
UpdateStateMachine (``InvalidDefinition`` naming it), and a stored definition from before is
refused when the task runs (``States.Runtime``, not retried).
"""

from __future__ import annotations

import base64
import re
import threading
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import boto3
import botocore.session
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, UnknownServiceError
from botocore.response import StreamingBody

from app.secrets.references import resolve_references
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall, require_json

PREFIX = "arn:aws:states:::aws-sdk:"
#: The SDK integration's names that are not boto3's, for the common services (others are found
#: by scanning every service model once).
ALIASES = {
    "sfn": "stepfunctions",
    "eventbridge": "events",
    "cloudwatchlogs": "logs",
    "acmpca": "acm-pca",
    "elasticloadbalancingv2": "elbv2",
    "apigatewayv2": "apigatewayv2",
}
#: What the shipped state machines use (gitlab-start-runner, gitlab-stop-runner), and the
#: read/tag calls that go with them.
DEFAULT_ALLOW = (
    "ec2:runInstances",
    "ec2:terminateInstances",
    "ec2:describeInstances",
    "ec2:createTags",
    "ec2:describeTags",
)
ALLOW_SETTING = "SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW"
_TOKENS = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|\d+")
_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def pascal_service(service_id: str) -> str:
    """``EC2`` → ``Ec2``, ``DynamoDB`` → ``DynamoDb``, ``ACM PCA`` → ``AcmPca`` (the Java SDK's
    class names, which Step Functions uses as error prefixes)."""
    return "".join(token.capitalize() for token in _TOKENS.findall(service_id))


@cache
def _botocore() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _integration_names() -> dict[str, str]:
    """SDK-integration service name (``sfn``, ``eventbridge``, ``acmpca``) → boto3's name.

    Built once from every service model's ``serviceId`` (a fraction of a second), only when a
    name is not already boto3's."""
    names: dict[str, str] = {}
    session = _botocore()
    for name in session.get_available_services():
        service_id = session.get_service_model(name).service_id
        names.setdefault(pascal_service(service_id).lower(), name)
    return names


def boto_service(service: str) -> str | None:
    available = _botocore().get_available_services()
    if service in available:
        return service
    if service.lower() in ALIASES:
        return ALIASES[service.lower()]
    return _integration_names().get(service.lower())


def split(base: str) -> tuple[str, str] | None:
    if not base.startswith(PREFIX):
        return None
    service, sep, action = base[len(PREFIX) :].partition(":")
    if not sep or not service or not action:
        return None
    return service, action


@cache
def _operation_names(service: str) -> frozenset[str]:
    model = _botocore().get_service_model(service)
    return frozenset(xform_name(name) for name in model.operation_names)


@cache
def allowed_actions(extra: str) -> frozenset[tuple[str, str]]:
    """(boto3 service, snake_case action or ``*``) pairs: the defaults plus ``extra``
    (comma-separated ``service:action``)."""
    found: set[tuple[str, str]] = set()
    for entry in (*DEFAULT_ALLOW, *extra.split(",")):
        service, _, action = entry.strip().partition(":")
        name = boto_service(service) if service else None
        if name is not None and action:
            found.add((name, "*" if action == "*" else xform_name(action)))
    return frozenset(found)


def refusal(base: str, extra: str) -> str | None:
    """Why the aws-sdk policy refuses the action ``base`` names, or None."""
    parts = split(base)
    name = boto_service(parts[0]) if parts else None
    if parts is None or name is None:
        return None  # not an action at all: problem() says so
    allowed = allowed_actions(extra)
    if (name, xform_name(parts[1])) in allowed or (name, "*") in allowed:
        return None
    return (
        f"The resource '{base}' calls the AWS action {parts[0]}:{parts[1]}, which smokehouse "
        f"does not allow (aws-sdk integrations are denied by default); allow it with "
        f"{ALLOW_SETTING}={parts[0]}:{parts[1]}"
    )


def _client(service: str) -> Any:
    key = (service, None)
    client = _clients.get(key)
    if client is None:
        with _lock:  # a boto3 Session is not thread-safe; the clients it makes are
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = boto3.session.Session().client(service)
    return client


def _plain(value: Any) -> Any:
    """boto3's response as JSON: timestamps ISO-8601, blobs base64, streams read as text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, StreamingBody):
        data = value.read()
        try:
            return data.decode()
        except UnicodeDecodeError:
            return base64.b64encode(data).decode()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return value


def error_name(client: Any, code: str) -> str:
    """The Step Functions error for the service's error ``code``."""
    model = client.meta.service_model
    prefix = pascal_service(model.service_id)
    for shape in model.error_shapes:
        if code in (shape.error_code, shape.name):
            name = shape.name
            return f"{prefix}.{name}" if name.endswith("Exception") else f"{prefix}.{name}Exception"
    return f"{prefix}.{prefix}Exception"


class AwsSdkResource:
    kind = "aws-sdk"
    transactional = False

    def accepts(self, base: str) -> bool:
        return base.startswith(PREFIX)

    def problem(self, base: str) -> str | None:
        parts = split(base)
        if parts is None:
            return f"The resource '{base}' is not an aws-sdk:<service>:<action> ARN"
        service, action = parts
        name = boto_service(service)
        if name is None:
            return f"The resource '{base}' names an unknown AWS service '{service}'"
        try:
            operations = _operation_names(name)
        except UnknownServiceError:  # pragma: no cover - listed but without a model
            return f"The resource '{base}' names an unknown AWS service '{service}'"
        if xform_name(action) not in operations:
            return f"The resource '{base}' names an unknown action '{action}' of '{service}'"
        return None

    def run(self, call: TaskCall) -> Any:
        parts = split(call.base)
        service = boto_service(parts[0]) if parts else None
        if parts is None or service is None:
            raise TaskError("States.Runtime", f"unsupported resource {call.base}")
        refused = refusal(call.base, call.settings.egress.aws_sdk_allow)
        if refused is not None:  # a definition stored before the policy, or the setting changed
            raise TaskError("States.Runtime", refused)
        params = call.parameters if call.parameters is not None else {}
        if not isinstance(params, dict):
            raise TaskError("States.Runtime", "the parameters of an aws-sdk task must be an object")
        client = _client(service)
        prefix = pascal_service(client.meta.service_model.service_id)
        # {{resolve:smokehouse:<id>}} secrets, for this call only (never back into params/history)
        params = resolve_references(params, call.settings)
        try:
            response = getattr(client, xform_name(parts[1]))(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            raise TaskError(
                error_name(client, str(error.get("Code", ""))),
                f"{error.get('Message', exc)} (Service: {prefix}, Status Code: "
                f"{meta.get('HTTPStatusCode', 0)}, Request ID: {meta.get('RequestId', '')})",
            ) from None
        except (BotoCoreError, ValueError, TypeError) as exc:  # bad parameters, no connection
            raise TaskError(f"{prefix}.SdkClientException", str(exc)) from None
        return require_json(_plain(response), f"the response of {call.base}")
