"""Tags on buses, rules and state machines, the way Terraform's AWS provider uses them: given at
create time, read back, changed, gone with the resource; unknown resources and bad tags refused."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.bus.conftest import ADMIN_SECRET, REGION, Live


def test_rule_and_bus_tags_round_trip(events: Any, uid: str) -> None:
    bus_arn = events.create_event_bus(Name=f"tagged-{uid}", Tags=[{"Key": "team", "Value": "pit"}])[
        "EventBusArn"
    ]
    rule_arn = events.put_rule(
        Name=f"r-{uid}",
        EventBusName=f"tagged-{uid}",
        EventPattern=json.dumps({"source": ["x"]}),
        Tags=[{"Key": "env", "Value": "yard"}],
    )["RuleArn"]
    assert events.list_tags_for_resource(ResourceARN=bus_arn)["Tags"] == [
        {"Key": "team", "Value": "pit"}
    ]
    events.tag_resource(
        ResourceARN=rule_arn, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "cost", "Value": "7"}]
    )
    events.untag_resource(ResourceARN=rule_arn, TagKeys=["cost"])
    assert events.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == [
        {"Key": "env", "Value": "prod"}
    ]
    events.delete_rule(Name=f"r-{uid}", EventBusName=f"tagged-{uid}")
    events.put_rule(
        Name=f"r-{uid}", EventBusName=f"tagged-{uid}", EventPattern=json.dumps({"source": ["x"]})
    )
    assert events.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == []  # not inherited


def test_unknown_resources_and_bad_tags_are_refused(events: Any, uid: str) -> None:
    rule_arn = events.put_rule(Name=f"b-{uid}", EventPattern=json.dumps({"source": ["x"]}))[
        "RuleArn"
    ]
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.list_tags_for_resource(ResourceARN=rule_arn + "-gone")
    with pytest.raises(ClientError) as caught:
        events.tag_resource(ResourceARN=rule_arn, Tags=[{"Key": "aws:x", "Value": "1"}])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        events.tag_resource(
            ResourceARN=rule_arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)]
        )
    assert caught.value.response["Error"]["Code"] == "LimitExceededException"
    assert events.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == []


def test_state_machine_tags(live: Live, uid: str) -> None:
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=live.url,
        region_name=REGION,
        aws_access_key_id="AKID",
        aws_secret_access_key=ADMIN_SECRET,
        config=Config(retries={"total_max_attempts": 1}),
    )
    arn = sfn.create_state_machine(
        name=f"tagged-{uid}",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::000000000000:role/x",
        tags=[{"key": "team", "value": "pit"}],
    )["stateMachineArn"]
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "yard"}])
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "yard"}]
    with pytest.raises(sfn.exceptions.TooManyTags):
        sfn.tag_resource(resourceArn=arn, tags=[{"key": f"k{i}", "value": "v"} for i in range(50)])
    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(sfn.exceptions.ResourceNotFound):
        sfn.list_tags_for_resource(resourceArn=arn)
