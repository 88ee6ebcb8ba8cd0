"""One queue system: SQS queues, their messages and the Scheduler's schedules as GraphQL (and so
the dashboard) shows them to a viewer, next to the work queues."""

from __future__ import annotations

import json
from typing import Any

import httpx

from app.auth import AccessKey, issue_session
from tests.integration.graphql_client import data
from tests.integration.sqs.conftest import REGION, VIEWER_SECRET, Live

VIEWER_TOKEN_KEY = AccessKey("AKSQSRO", VIEWER_SECRET, "viewer")

QUEUES = """query($prefix: String) { sqsQueues(prefix: $prefix) {
  name arn fifo visible inFlight delayed visibilityTimeout deadLetterQueue maxReceiveCount } }"""
MESSAGES = """query($queue: String!) { queueMessages(queue: $queue) {
  queue mode body attempts visibleAt } }"""
SCHEDULES = """query($group: String) { schedules(group: $group) {
  name group arn expression state nextFireAt targetArn } }"""


def test_a_viewer_sees_sqs_queues_their_messages_and_schedules(
    sqs: Any, live: Live, uid: str
) -> None:
    dlq = sqs.create_queue(QueueName=f"gq-dlq-{uid}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=f"gq-{uid}",
        Attributes={
            "VisibilityTimeout": "45",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        },
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="pork shoulder")
    sqs.send_message(QueueUrl=url, MessageBody="ribs")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    (received,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]

    scheduler = live.client(service="scheduler")
    scheduler.create_schedule_group(Name=f"pit-{uid}")
    scheduler.create_schedule(
        Name="check-fire",
        GroupName=f"pit-{uid}",
        ScheduleExpression="rate(15 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": dlq_arn, "RoleArn": "arn:aws:iam::000000000000:role/x", "Input": "{}"},
    )

    token = issue_session(VIEWER_TOKEN_KEY)
    with httpx.Client(base_url=live.url) as client:
        queues = {
            q["name"]: q
            for q in data(client, QUEUES, token, prefix="gq-")["sqsQueues"]
            if q["name"].endswith(uid)
        }
        messages = data(client, MESSAGES, token, queue=f"gq-{uid}")["queueMessages"]
        schedules = data(client, SCHEDULES, token, group=f"pit-{uid}")["schedules"]
    main = queues[f"gq-{uid}"]
    assert (main["visible"], main["inFlight"], main["delayed"]) == (1, 1, 1)
    assert main["visibilityTimeout"] == 45
    assert (main["deadLetterQueue"], main["maxReceiveCount"]) == (f"gq-dlq-{uid}", 3)
    assert main["arn"] == f"arn:aws:sqs:{REGION}:000000000000:gq-{uid}"
    assert queues[f"gq-dlq-{uid}"]["deadLetterQueue"] is None

    assert sorted(m["body"] for m in messages) == ["later", "pork shoulder", "ribs"]
    assert all(m["mode"] == "pull" and m["queue"] == f"gq-{uid}" for m in messages)
    by_body = {m["body"]: m for m in messages}
    assert by_body[received["Body"]]["attempts"] == 1  # the receive count

    (schedule,) = schedules
    assert schedule["expression"] == "rate(15 minutes)"
    assert schedule["state"] == "ENABLED"
    assert schedule["nextFireAt"] is not None
    assert schedule["targetArn"] == dlq_arn
    assert schedule["arn"].endswith(f":schedule/pit-{uid}/check-fire")
