"""``boto3.client("sqs")`` against a live smokehouse, embedded and production: each operation
as SQS documents it, errors included."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from app.db import get_database
from app.queues.models import QueueMessage
from app.queues.sqs import api as sqs_api
from tests.integration.sqs.conftest import ACCOUNT, Live


def code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


def receive(sqs: Any, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    return list(sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", []))


# --- queues ----------------------------------------------------------------------------------


def test_create_get_list_delete(sqs: Any, live: Live, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"jobs-{uid}")["QueueUrl"]
    assert url == f"{live.url}/{ACCOUNT}/jobs-{uid}"
    assert sqs.create_queue(QueueName=f"jobs-{uid}")["QueueUrl"] == url  # idempotent
    assert sqs.get_queue_url(QueueName=f"jobs-{uid}")["QueueUrl"] == url
    assert sqs.list_queues(QueueNamePrefix=f"jobs-{uid}")["QueueUrls"] == [url]
    sqs.delete_queue(QueueUrl=url)
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=f"jobs-{uid}")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as caught:
        sqs.get_queue_url(QueueName=f"jobs-{uid}")
    assert code(caught) == "AWS.SimpleQueueService.NonExistentQueue"


def test_list_queues_pages(sqs: Any, uid: str) -> None:
    urls = [sqs.create_queue(QueueName=f"page-{uid}-{i}")["QueueUrl"] for i in range(5)]
    pages = sqs.get_paginator("list_queues").paginate(
        QueueNamePrefix=f"page-{uid}", PaginationConfig={"PageSize": 2}
    )
    assert [u for page in pages for u in page.get("QueueUrls", [])] == urls


def test_create_with_other_attributes_is_refused(sqs: Any, uid: str) -> None:
    sqs.create_queue(QueueName=f"a-{uid}", Attributes={"VisibilityTimeout": "10"})
    with pytest.raises(sqs.exceptions.QueueNameExists) as caught:
        sqs.create_queue(QueueName=f"a-{uid}", Attributes={"VisibilityTimeout": "20"})
    assert code(caught) == "QueueAlreadyExists"


@pytest.mark.parametrize(
    ("attributes", "error"),
    [
        ({"VisibilityTimeout": "43201"}, "InvalidAttributeValue"),
        ({"DelaySeconds": "-1"}, "InvalidAttributeValue"),
        ({"NoSuchThing": "1"}, "InvalidAttributeName"),
        ({"ContentBasedDeduplication": "true"}, "InvalidAttributeName"),  # FIFO only
        ({"FifoQueue": "true"}, "InvalidParameterValue"),  # name lacks .fifo
    ],
)
def test_bad_attributes_are_refused_and_nothing_is_created(
    sqs: Any, uid: str, attributes: dict[str, str], error: str
) -> None:
    with pytest.raises(ClientError) as caught:
        sqs.create_queue(QueueName=f"bad-{uid}", Attributes=attributes)
    assert code(caught) == error
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=f"bad-{uid}")


def test_attributes_report_counts_and_settings(sqs: Any, live: Live, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"attrs-{uid}", tags={"team": "pit"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.send_message(QueueUrl=url, MessageBody="two")
    receive(sqs, url)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "45"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert got["ApproximateNumberOfMessages"] == "1"
    assert got["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert got["ApproximateNumberOfMessagesDelayed"] == "1"
    assert got["VisibilityTimeout"] == "45"
    assert got["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:attrs-{uid}"
    assert got["MessageRetentionPeriod"] == "345600"
    with pytest.raises(ClientError) as caught:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"])
    assert code(caught) == "InvalidAttributeName"


def test_tags_round_trip(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"tags-{uid}", tags={"team": "pit", "env": "yard"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "pit", "env": "yard"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "prod", "cost": "7"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "prod", "cost": "7"}


def test_a_viewer_may_look_but_not_send(sqs: Any, viewer: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"ro-{uid}")["QueueUrl"]
    assert viewer.get_queue_url(QueueName=f"ro-{uid}")["QueueUrl"] == url
    with pytest.raises(ClientError) as caught:
        viewer.send_message(QueueUrl=url, MessageBody="x")
    assert code(caught) == "AccessDeniedException"
    assert receive(sqs, url) == []


# --- messages --------------------------------------------------------------------------------


def test_send_receive_delete_with_attributes(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"msg-{uid}")["QueueUrl"]
    attributes = {
        "probe": {"DataType": "String", "StringValue": "brisket"},
        "temp": {"DataType": "Number", "StringValue": "92.5"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="stall?", MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"stall?").hexdigest()
    (message,) = receive(
        sqs, url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
    )
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "stall?"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"]["raw"]["BinaryValue"] == b"\x00\x01\xff"
    assert message["MessageAttributes"]["temp"]["StringValue"] == "92.5"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(message["Attributes"]["SentTimestamp"]) > 0
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])  # idempotent
    assert receive(sqs, url) == []


def test_only_the_asked_message_attributes_come_back(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"pick-{uid}")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="x",
        MessageAttributes={
            "probe.a": {"DataType": "String", "StringValue": "1"},
            "probe.b": {"DataType": "String", "StringValue": "2"},
            "other": {"DataType": "String", "StringValue": "3"},
        },
    )
    (message,) = receive(sqs, url, MessageAttributeNames=["probe.*"])
    assert sorted(message["MessageAttributes"]) == ["probe.a", "probe.b"]


def test_an_unfinished_message_comes_back_after_its_visibility_timeout(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"vis-{uid}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    (first,) = receive(sqs, url, VisibilityTimeout=1)
    assert receive(sqs, url) == []
    time.sleep(1.2)
    (second,) = receive(sqs, url, MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # a stale handle
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0
    )
    (third,) = receive(sqs, url)  # the stale delete did not delete it; visibility 0 freed it
    sqs.delete_message(QueueUrl=url, ReceiptHandle=third["ReceiptHandle"])
    assert receive(sqs, url) == []


def test_delayed_messages_wait(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"delay-{uid}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="soon", DelaySeconds=1)
    assert receive(sqs, url) == []
    started = time.monotonic()
    (message,) = receive(sqs, url, WaitTimeSeconds=5)  # a long poll ends when it turns visible
    assert message["Body"] == "soon"
    assert time.monotonic() - started < 2.5


def test_batches_succeed_and_fail_per_entry(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"batch-{uid}")["QueueUrl"]
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "good", "MessageBody": "a"},
            {"Id": "bad", "MessageBody": "nul \x00 inside"},
            {"Id": "late", "MessageBody": "b", "DelaySeconds": 901},
        ],
    )
    assert [s["Id"] for s in result["Successful"]] == ["good"]
    failed = {f["Id"]: f for f in result["Failed"]}
    assert failed["bad"]["Code"] == "InvalidMessageContents"
    assert failed["bad"]["SenderFault"]
    assert failed["late"]["Code"] == "InvalidParameterValue"
    (message,) = receive(sqs, url, MaxNumberOfMessages=10)
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "ReceiptHandle": message["ReceiptHandle"]},
            {"Id": "junk", "ReceiptHandle": "not-a-handle"},
        ],
    )
    assert [s["Id"] for s in deleted["Successful"]] == ["ok"]
    assert deleted["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (
            [{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)],
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        ),
        (
            [{"Id": "same", "MessageBody": "x"}] * 2,
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        ),
        ([{"Id": "bad id!", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
    ],
)
def test_malformed_batches_are_refused_whole(
    live: Live, uid: str, entries: list[dict[str, str]], error: str
) -> None:
    sqs = live.client(parameter_validation=False)
    url = sqs.create_queue(QueueName=f"mal-{uid}")["QueueUrl"]
    with pytest.raises(ClientError) as caught:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert code(caught) == error
    assert receive(sqs, url) == []


def test_a_message_over_the_queues_maximum_is_refused(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"big-{uid}", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1025)
    assert code(caught) == "InvalidParameterValue"
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1024)


def test_a_message_of_the_full_1_mib_goes_through_even_when_json_escapes_it(
    sqs: Any, uid: str
) -> None:
    """SQS's quota is 1 MiB of UTF-8 (the default ``MaximumMessageSize``); botocore sends non-ASCII
    escaped (``\\u00e9``, six bytes for two), so this request is 3 MiB. One byte more is SQS's
    error, not a 413."""
    url = sqs.create_queue(QueueName=f"full-{uid}")["QueueUrl"]
    body = "é" * (1_048_576 // 2)  # 1 MiB of UTF-8
    sent = sqs.send_message(QueueUrl=url, MessageBody=body)
    (got,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert got["Body"] == body
    assert got["MD5OfBody"] == sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=url, MessageBody=body + "x")
    assert code(caught) == "InvalidParameterValue"


def test_purge_empties_the_queue_once_a_minute(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"purge-{uid}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.purge_queue(QueueUrl=url)
    assert receive(sqs, url) == []
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress):
        sqs.purge_queue(QueueUrl=url)


def test_unknown_queue(sqs: Any, live: Live) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=f"{live.url}/{ACCOUNT}/never-made", MessageBody="x")


# --- dead letters ----------------------------------------------------------------------------


def test_a_message_received_too_often_moves_to_the_dead_letter_queue_and_back(
    sqs: Any, uid: str
) -> None:
    dlq = sqs.create_queue(QueueName=f"dlq-{uid}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName=f"src-{uid}", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    source_arn = dlq_arn.replace(f"dlq-{uid}", f"src-{uid}")
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [url]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        assert len(receive(sqs, url, VisibilityTimeout=0)) == 1
    assert receive(sqs, url) == []  # the third receive moved it instead
    (dead,) = receive(sqs, dlq, MessageSystemAttributeNames=["All"], VisibilityTimeout=0)
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"] == source_arn
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
    assert tasks[0]["TaskHandle"] == handle
    assert tasks[0]["Status"] == "COMPLETED"
    assert tasks[0]["ApproximateNumberOfMessagesMoved"] == 1
    (back,) = receive(sqs, url, MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert back["Body"] == "poison"
    assert back["Attributes"]["ApproximateReceiveCount"] == "1"


def test_a_move_task_needs_a_dead_letter_queue(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"plain-{uid}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    with pytest.raises(ClientError):
        sqs.start_message_move_task(SourceArn=arn)
    with pytest.raises(sqs.exceptions.ResourceNotFoundException):
        sqs.start_message_move_task(SourceArn=arn + "-gone")


# --- FIFO ------------------------------------------------------------------------------------


def test_fifo_keeps_order_per_group_and_does_not_block_other_groups(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"f-{uid}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    sequences = []
    for i in range(3):
        for group in ("a", "b"):
            sent = sqs.send_message(
                QueueUrl=url,
                MessageBody=f"{group}{i}",
                MessageGroupId=group,
                MessageDeduplicationId=f"{group}-{i}",
            )
            sequences.append(int(sent["SequenceNumber"]))
    assert sequences == sorted(sequences)
    (first,) = receive(sqs, url, MessageSystemAttributeNames=["MessageGroupId"])
    assert first["Body"] == "a0"
    rest = receive(sqs, url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in rest] == ["b0", "b1", "b2"]  # group a waits for a0
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert [m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)] == ["a1", "a2"]


def test_fifo_drops_duplicates_within_five_minutes(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(
        QueueName=f"d-{uid}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    first = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    again = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    by_id = sqs.send_message(
        QueueUrl=url, MessageBody="other", MessageGroupId="g", MessageDeduplicationId="k"
    )
    by_id_again = sqs.send_message(
        QueueUrl=url, MessageBody="different body", MessageGroupId="g", MessageDeduplicationId="k"
    )
    assert again["MessageId"] == first["MessageId"]
    assert by_id_again["MessageId"] == by_id["MessageId"]
    assert [m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)] == ["same", "other"]


def test_fifo_needs_a_group_and_a_deduplication_id(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"n-{uid}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="1")
    assert "MessageGroupId" in str(caught.value)
    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert "ContentBasedDeduplication" in str(caught.value)


# --- long polling ----------------------------------------------------------------------------


def test_a_long_poll_wakes_when_a_message_is_sent(sqs: Any, live: Live, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"lp-{uid}")["QueueUrl"]
    got: list[tuple[float, list[dict[str, Any]]]] = []

    def poll() -> None:
        messages = receive(live.client(), url, WaitTimeSeconds=10)
        got.append((time.monotonic(), messages))

    poller = threading.Thread(target=poll)
    poller.start()
    # The poll re-checks on its own every RECHECK_SECONDS (2 s): send just after its first
    # re-check, so that a poll answered by its next re-check would answer ~1.8 s after the
    # send, and one woken by the send well within 1 s (0.5 s seen under CI's load).
    time.sleep(sqs_api.RECHECK_SECONDS + 0.2)
    sent_at = time.monotonic()
    sqs.send_message(QueueUrl=url, MessageBody="wake")
    poller.join(15)
    ((woke_at, messages),) = got
    assert [m["Body"] for m in messages] == ["wake"]
    assert woke_at - sent_at < 1.0


def test_an_empty_long_poll_waits_without_busy_polling(
    sqs: Any, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqs.create_queue(QueueName=f"idle-{uid}")["QueueUrl"]
    checks = []
    real = sqs_api._receive_once

    def counted(*args: Any) -> Any:
        checks.append(time.monotonic())
        return real(*args)

    monkeypatch.setattr(sqs_api, "_receive_once", counted)
    started = time.monotonic()
    assert receive(sqs, url, WaitTimeSeconds=3) == []
    assert 2.9 <= time.monotonic() - started < 4.5
    assert len(checks) <= 4  # one before and one after subscribing, then one per RECHECK_SECONDS


def test_sqs_messages_are_work_queue_rows(sqs: Any, live: Live, uid: str) -> None:
    url = sqs.create_queue(QueueName=f"one-{uid}")["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="shared store")
    with get_database(live.settings.sqlalchemy_url).session() as session:
        row = session.scalar(select(QueueMessage).where(QueueMessage.id == sent["MessageId"]))
        assert row is not None
        assert (row.queue, row.mode) == (f"one-{uid}", "pull")


def test_fifo_deduplication_per_message_group(sqs: Any, uid: str) -> None:
    url = sqs.create_queue(
        QueueName=f"g-{uid}.fifo",
        Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup"},
    )["QueueUrl"]
    for group in ("a", "b", "a"):
        sqs.send_message(
            QueueUrl=url, MessageBody=group, MessageGroupId=group, MessageDeduplicationId="same"
        )
    bodies = sorted(m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10))
    assert bodies == ["a", "b"]  # the same id in another group is another message
