"""``examples/sqs-poller``, the seed's plain boto3 poller, run as its own process against a live
smokehouse: it handles and deletes what succeeds, a failing message ends in the dead-letter
queue after ``maxReceiveCount`` receives, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sqs.conftest import ADMIN_SECRET, REGION, Live
from tests.services import wait_for

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sqs-poller"


def depth(sqs: Any, url: str) -> int:
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(got["ApproximateNumberOfMessages"]) + int(
        got["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_poller_handles_deletes_and_dead_letters(
    sqs: Any, live: Live, uid: str, tmp_path: Path, mode: str
) -> None:
    dlq = sqs.create_queue(QueueName=f"poll-dlq-{uid}-{mode}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    name = f"poll-{uid}-{mode}"
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    cuts = [f"cut-{i}" for i in range(5)]
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            *({"Id": str(i), "MessageBody": json.dumps({"cut": c})} for i, c in enumerate(cuts)),
            {"Id": "bad", "MessageBody": json.dumps({"cut": "shoe", "fail": True})},
        ],
    )
    out = tmp_path / "handled.txt"
    env = {
        "PATH": os.environ["PATH"],
        "AWS_ENDPOINT_URL_SQS": live.url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKSQS",
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        "QUEUE_NAME": name,
        "POLLER_MODE": mode,
        "POLLER_WAIT_SECONDS": "1",
        "POLLER_OUT": str(out),
    }
    poller = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "poller.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: depth(sqs, url) == 0 and depth(sqs, dlq) == 1,
            30,
            what="the queue drained and the failing message dead-lettered",
        )
        # at least once (a handler slower than the visibility timeout runs again: SQS's contract)
        assert set(out.read_text().split()) == set(cuts)
        (dead,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
        assert json.loads(dead["Body"])["cut"] == "shoe"
    finally:
        poller.send_signal(signal.SIGTERM)
        _, err = poller.communicate(timeout=20)
    assert poller.returncode == 0, err.decode()[-2000:]
