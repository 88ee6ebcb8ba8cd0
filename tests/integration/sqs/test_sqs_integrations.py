"""SQS queues as a rule target and as a Step Functions integration, end to end through boto3."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import select

from app.bus.delivery import deliver
from app.bus.models import Delivery
from app.db import get_database
from tests.integration.sqs.conftest import ADMIN_SECRET, REGION, Live


def client(live: Live, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=live.url,
        region_name=REGION,
        aws_access_key_id="AKSQS",
        aws_secret_access_key=ADMIN_SECRET,
        config=Config(retries={"total_max_attempts": 1}, inject_host_prefix=False),
    )


def arn_of(sqs: Any, url: str) -> str:
    return str(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    )


def pending_deliveries(live: Live, rule: str) -> list[str]:
    with get_database(live.settings.sqlalchemy_url).session() as session:
        return list(session.scalars(select(Delivery.id).where(Delivery.rule_name == rule)))


def test_a_rule_sends_matching_events_to_a_queue_once_per_delivery(
    sqs: Any, live: Live, uid: str
) -> None:
    events = client(live, "events")
    url = sqs.create_queue(QueueName=f"orders-{uid}")["QueueUrl"]
    events.put_rule(Name=f"big-{uid}", EventPattern=json.dumps({"source": [f"shop.{uid}"]}))
    failed = events.put_targets(
        Rule=f"big-{uid}",
        Targets=[{"Id": "q", "Arn": arn_of(sqs, url), "InputPath": "$.detail"}],
    )
    assert failed["FailedEntryCount"] == 0
    events.put_events(
        Entries=[{"Source": f"shop.{uid}", "DetailType": "Order", "Detail": '{"total": 120}'}]
    )
    (delivery_id,) = pending_deliveries(live, f"big-{uid}")
    assert deliver(live.settings, delivery_id) == "succeeded"
    # A redelivered task finds the delivery done; an attempt re-run after a lost outcome
    # would find the message id taken: either way, one message.
    deliver(live.settings, delivery_id)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"total": 120}]


def test_a_fifo_target_needs_a_message_group(sqs: Any, live: Live, uid: str) -> None:
    events = client(live, "events")
    url = sqs.create_queue(
        QueueName=f"t-{uid}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    events.put_rule(Name=f"f-{uid}", EventPattern=json.dumps({"source": [f"f.{uid}"]}))
    refused = events.put_targets(Rule=f"f-{uid}", Targets=[{"Id": "q", "Arn": arn_of(sqs, url)}])
    assert refused["FailedEntryCount"] == 1
    accepted = events.put_targets(
        Rule=f"f-{uid}",
        Targets=[{"Id": "q", "Arn": arn_of(sqs, url), "SqsParameters": {"MessageGroupId": "g"}}],
    )
    assert accepted["FailedEntryCount"] == 0


def test_a_target_queue_that_is_gone_dead_letters_at_once(sqs: Any, live: Live, uid: str) -> None:
    events = client(live, "events")
    url = sqs.create_queue(QueueName=f"gone-{uid}")["QueueUrl"]
    arn = arn_of(sqs, url)
    sqs.delete_queue(QueueUrl=url)
    events.put_rule(Name=f"g-{uid}", EventPattern=json.dumps({"source": [f"g.{uid}"]}))
    events.put_targets(Rule=f"g-{uid}", Targets=[{"Id": "q", "Arn": arn}])
    events.put_events(Entries=[{"Source": f"g.{uid}", "DetailType": "x", "Detail": "{}"}])
    (delivery_id,) = pending_deliveries(live, f"g-{uid}")
    assert deliver(live.settings, delivery_id) == "failed"  # no retry: straight to dead
    with get_database(live.settings.sqlalchemy_url).session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert delivery.status == "dead"
        assert "NonExistentQueue" in (delivery.last_error or "")


def test_a_state_machine_sends_a_message(sqs: Any, live: Live, uid: str) -> None:
    sfn = client(live, "stepfunctions")
    url = sqs.create_queue(QueueName=f"sfn-{uid}")["QueueUrl"]
    definition = {
        "StartAt": "Send",
        "States": {
            "Send": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {
                    "QueueUrl": url,
                    "MessageBody": {"probe.$": "$.probe", "temp.$": "$.temp"},
                    "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "reading"}},
                },
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=f"send-{uid}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::000000000000:role/x",
        type="EXPRESS",
    )["stateMachineArn"]
    run = sfn.start_sync_execution(
        stateMachineArn=machine, input=json.dumps({"probe": "p1", "temp": 101.5})
    )
    assert run["status"] == "SUCCEEDED", run
    output = json.loads(run["output"])
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert output["MessageId"] == message["MessageId"]
    assert json.loads(message["Body"]) == {"probe": "p1", "temp": 101.5}
    assert message["MessageAttributes"]["kind"]["StringValue"] == "reading"


def test_a_missing_queue_fails_the_task_with_the_sqs_error(live: Live, uid: str) -> None:
    sfn = client(live, "stepfunctions")
    definition = {
        "StartAt": "Send",
        "States": {
            "Send": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {
                    "QueueUrl": f"{live.url}/000000000000/nope-{uid}",
                    "MessageBody": "x",
                },
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=f"nope-{uid}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::000000000000:role/x",
        type="EXPRESS",
    )["stateMachineArn"]
    run = sfn.start_sync_execution(stateMachineArn=machine, input="{}")
    assert run["status"] == "FAILED"
    assert run["error"] == "SQS.AmazonSQSException"
    assert "NonExistentQueue" in run["cause"]


@pytest.mark.parametrize("suffix", [".waitForTaskToken"])
def test_express_machines_may_not_wait_for_a_token(live: Live, uid: str, suffix: str) -> None:
    sfn = client(live, "stepfunctions")
    definition = {
        "StartAt": "Send",
        "States": {
            "Send": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage" + suffix,
                "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True,
            }
        },
    }
    with pytest.raises(sfn.exceptions.InvalidDefinition):
        sfn.create_state_machine(
            name=f"w-{uid}",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::000000000000:role/x",
            type="EXPRESS",
        )
