"""``arn:aws:states:::sqs:sendMessage.waitForTaskToken`` on a Standard machine with a real worker:
the task sends the token in the message, an outside consumer receives it over boto3's SQS and
answers with ``SendTaskSuccess``; the execution continues with that answer."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config

from tests.integration.workflows.stack import KEY_ID, KEY_SECRET, Stack


def sqs_client(wf: Stack) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=wf.url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=KEY_SECRET,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


def test_a_consumer_answers_the_token_it_received_by_sqs(wf: Stack, unique: str) -> None:
    sqs, sfn = sqs_client(wf), wf.client()
    url = sqs.create_queue(QueueName=unique.replace(".", "-")[:70])["QueueUrl"]
    machine = wf.create(
        unique,
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {
                        "QueueUrl": url,
                        "MessageBody": {"token.$": "$$.Task.Token", "cut.$": "$.cut"},
                    },
                    "ResultPath": "$.answer",
                    "End": True,
                }
            },
        },
    )
    execution = wf.start(machine, {"cut": "brisket"})
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)["Messages"]
    body = json.loads(message["Body"])
    assert body["cut"] == "brisket"
    sfn.send_task_success(taskToken=body["token"], output=json.dumps({"done": True}))
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    finished = wf.wait(execution)
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"cut": "brisket", "answer": {"done": True}}
