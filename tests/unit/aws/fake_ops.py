"""A registry of fake operations shaped like EventBridge's and Step Functions' real answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.auth import KeyRing
from app.aws.errors import not_found
from app.aws.operations import AwsCall, AwsOperations
from tests.unit.aws.signing import KEYS

#: ``aws_client("events", key=..., secret=..., region=...)`` -> a boto3 client (see conftest).
ClientFactory = Callable[..., Any]

CREATED = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


@dataclass
class State:
    """What a test may change on the running server: its keys, its clock, what handlers saw."""

    keyring: KeyRing = KEYS
    skew: timedelta = timedelta(0)
    calls: list[tuple[dict[str, Any], AwsCall]] = field(default_factory=list)

    def reset(self) -> None:
        self.keyring, self.skew = KEYS, timedelta(0)
        self.calls.clear()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skew


def build_registry(state: State) -> AwsOperations:
    registry = AwsOperations(validate=False)  # these tests are about the transport

    @registry.operation("AWSEvents", "ListRules", write=False)
    def list_rules(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        state.calls.append((params, call))
        return {
            "Rules": [
                {
                    "Name": "probe-hot",
                    "Arn": call.arn("events", "rule/probe-hot"),
                    "EventPattern": json.dumps({"source": ["smokehouse.iot"]}),
                    "State": "ENABLED",
                    "EventBusName": "default",
                }
            ]
        }

    @registry.operation("AWSEvents", "PutRule", write=True)
    def put_rule(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        state.calls.append((params, call))
        return {"RuleArn": call.arn("events", f"rule/{params['Name']}")}

    @registry.operation("AWSEvents", "DescribeRule", write=False)
    def describe_rule(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        raise not_found(f"Rule {params['Name']} does not exist on EventBus default.")

    @registry.operation("AWSEvents", "DeleteRule", write=True)
    def delete_rule(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        raise RuntimeError("the database is on fire")

    @registry.operation("AWSEvents", "TestEventPattern", write=False)
    def not_a_dict(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        return ["not", "a", "dict"]  # type: ignore[return-value]

    @registry.operation("AWSStepFunctions", "ListStateMachines", write=False)
    def list_state_machines(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        state.calls.append((params, call))
        return {
            "stateMachines": [
                {
                    "stateMachineArn": call.arn("states", "stateMachine:enrich"),
                    "name": "enrich",
                    "type": "STANDARD",
                    "creationDate": CREATED,
                }
            ]
        }

    @registry.operation("AWSStepFunctions", "StartExecution", write=True)
    def start_execution(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        state.calls.append((params, call))
        return {
            "executionArn": call.arn("states", f"execution:enrich:{params.get('name', 'x')}"),
            "startDate": CREATED.replace(tzinfo=None),  # naive datetimes are taken as UTC
        }

    @registry.operation("AWSStepFunctions", "DeleteStateMachine", write=True)
    def crash(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        raise ValueError("bug")

    @registry.operation("AWSStepFunctions", "DescribeExecution", write=False)
    def odd_types(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
        return {
            "whole": Decimal("3"),
            "part": Decimal("1.5"),
            "blob": b"\x00\xff",
            "set": {"b", "a"},
            "when": CREATED,
        }

    return registry
