"""``boto3.client("sqs")``: SQS's JSON protocol (``AmazonSQS.<Op>``) on ``POST /``.

Each handler parses what the model leaves to it, opens the call's unit of work and calls
:mod:`~app.queues.sqs.queues` or :mod:`~app.queues.sqs.messages`. ``ReceiveMessage`` is a
coroutine: a long poll waits on the queue's wake-up channel (:mod:`app.realtime`: Redis pub/sub,
or the MQTT broker embedded) without holding a thread, and a send anywhere wakes it within
milliseconds; the wait also ends when a delayed or timed-out message becomes visible.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool

from app import realtime
from app.aws.errors import AwsError
from app.aws.operations import AwsCall, registry
from app.common import long_poll
from app.config import Settings
from app.db import after_commit, get_database, utcnow
from app.queues.models import QueueMessage, SqsDeduplication, SqsMoveTask, is_pull
from app.queues.sqs import errors
from app.queues.sqs import messages as sqs_messages
from app.queues.sqs import queues as sqs_queues
from app.queues.sqs.queues import Where
from app.queues.sqs.service import wake_channel

SQS: Final = "AmazonSQS"
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
MAX_BATCH_BYTES: Final = 1_048_576
#: A long poll re-checks the queue at least this often: a lost wake-up costs at most this.
RECHECK_SECONDS: Final = 2.0


def _where(call: AwsCall) -> Where:
    return Where(call.region, call.account_id, call.endpoint)


def _queue_name(params: dict[str, Any], call: AwsCall) -> str:
    return sqs_queues.name_from_url(str(params["QueueUrl"]), _where(call))


def _wake_after_commit(call: AwsCall, session: Any, queue: str) -> None:
    settings = call.require_settings()
    after_commit(session).call(realtime.publish, settings, wake_channel(queue), {})


# --- queues ----------------------------------------------------------------------------------


@registry.operation(SQS, "CreateQueue", write=True)
def create_queue(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    where = _where(call)
    with call.session() as session:
        queue = sqs_queues.create(
            session,
            str(params["QueueName"]),
            sqs_queues.as_strings(params.get("Attributes") or {}),
            sqs_queues.as_strings(params.get("tags") or {}),
            where,
        )
        return {"QueueUrl": where.url(queue.name)}


@registry.operation(SQS, "GetQueueUrl", write=False)
def get_queue_url(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    where = _where(call)
    owner = params.get("QueueOwnerAWSAccountId")
    if owner and owner != call.account_id:
        raise errors.queue_does_not_exist()
    with call.session() as session:
        name = sqs_queues.known_name(str(params["QueueName"]))
        return {"QueueUrl": where.url(sqs_queues.get(session, name).name)}


@registry.operation(SQS, "ListQueues", write=False)
def list_queues(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    where = _where(call)
    limit = params.get("MaxResults")
    if limit is not None and not 1 <= int(limit) <= 1000:
        raise errors.invalid_parameter(
            f"Value {limit} for parameter MaxResults is invalid. Reason: MaxResults must be an "
            "integer between 1 and 1000."
        )
    with call.session() as session:
        names = sqs_queues.list_names(session, params.get("QueueNamePrefix"))
    after = params.get("NextToken")
    if after:
        names = [n for n in names if n > str(after)]
    out: dict[str, Any] = {}
    if limit is not None and len(names) > int(limit):
        names = names[: int(limit)]
        out["NextToken"] = names[-1]
    if names:
        out["QueueUrls"] = [where.url(n) for n in names]
    return out


@registry.operation(SQS, "DeleteQueue", write=True)
def delete_queue(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        queue = sqs_queues.get(session, name)
        session.execute(
            delete(QueueMessage).where(QueueMessage.queue == name, is_pull(QueueMessage.mode))
        )
        session.execute(delete(SqsDeduplication).where(SqsDeduplication.queue == name))
        session.delete(queue)
        sqs_queues.changed(name)
    return {}


@registry.operation(SQS, "GetQueueAttributes", write=False, shallow=("AttributeNames",))
def get_queue_attributes(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        queue = sqs_queues.get(session, name)
        attributes = sqs_queues.report(
            session, queue, list(params.get("AttributeNames") or []), _where(call)
        )
    return {"Attributes": attributes} if attributes else {}


@registry.operation(SQS, "SetQueueAttributes", write=True)
def set_queue_attributes(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        queue = sqs_queues.get(session, name)
        sqs_queues.set_attributes(
            session, queue, sqs_queues.as_strings(params["Attributes"]), _where(call)
        )
    return {}


@registry.operation(SQS, "ListDeadLetterSourceQueues", write=False)
def list_dead_letter_source_queues(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name, where = _queue_name(params, call), _where(call)
    with call.session() as session:
        sqs_queues.get(session, name)
        sources = sqs_queues.dead_letter_sources(session, name, where)
    return {"queueUrls": [where.url(n) for n in sources]}


@registry.operation(SQS, "TagQueue", write=True)
def tag_queue(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        sqs_queues.tag(sqs_queues.get(session, name), sqs_queues.as_strings(params["Tags"]))
    return {}


@registry.operation(SQS, "UntagQueue", write=True)
def untag_queue(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        sqs_queues.untag(sqs_queues.get(session, name), [str(k) for k in params["TagKeys"]])
    return {}


@registry.operation(SQS, "ListQueueTags", write=False)
def list_queue_tags(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        tags = dict(sqs_queues.get(session, name).tags)
    return {"Tags": tags} if tags else {}


@registry.operation(SQS, "PurgeQueue", write=True)
def purge_queue(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        sqs_messages.purge(session, sqs_queues.get(session, name))
    return {}


@registry.operation(SQS, "AddPermission", write=True)
def add_permission(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    raise errors.unsupported("Queue permissions are not supported: access is by access key role.")


@registry.operation(SQS, "RemovePermission", write=True)
def remove_permission(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    raise errors.unsupported("Queue permissions are not supported: access is by access key role.")


# --- sending ---------------------------------------------------------------------------------


def _outgoing(entry: dict[str, Any]) -> sqs_messages.Outgoing:
    delay = entry.get("DelaySeconds")
    return sqs_messages.Outgoing(
        body=str(entry.get("MessageBody", "")),
        delay_seconds=None if delay is None else int(delay),
        attributes=dict(entry.get("MessageAttributes") or {}),
        system_attributes=dict(entry.get("MessageSystemAttributes") or {}),
        group_id=entry.get("MessageGroupId"),
        dedup_id=entry.get("MessageDeduplicationId"),
    )


@registry.operation(SQS, "SendMessage", write=True)
def send_message(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    message = _outgoing(params)
    with call.session() as session:
        queue = sqs_queues.snapshot(session, name)
        sqs_messages.check(message, queue)
        (sent,) = sqs_messages.send(session, queue, [message])
        _wake_after_commit(call, session, name)
    return sent.answer()


def _batch(entries: list[dict[str, Any]]) -> None:
    """SQS's checks on a batch as a whole (each answered as the request's error)."""
    if not entries:
        raise errors.empty_batch()
    if len(entries) > 10:
        raise errors.too_many_entries(len(entries))
    ids = [str(e.get("Id", "")) for e in entries]
    if any(not BATCH_ID.match(i) for i in ids):
        raise errors.invalid_batch_id()
    if len(set(ids)) != len(ids):
        raise errors.ids_not_distinct()


def _failure(entry_id: str, error: AwsError) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": error.status < 500,
        "Code": error.query_code or error.code.rpartition("#")[2],
        "Message": error.message,
    }


@registry.operation(SQS, "SendMessageBatch", write=True)
def send_message_batch(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    entries = list(params.get("Entries") or [])
    _batch(entries)
    size = sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
    if size > MAX_BATCH_BYTES:
        raise errors.batch_too_long(size, MAX_BATCH_BYTES)
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with call.session() as session:
        queue = sqs_queues.snapshot(session, name)
        good: list[tuple[str, sqs_messages.Outgoing]] = []
        for entry in entries:
            message = _outgoing(entry)
            try:
                sqs_messages.check(message, queue)
            except AwsError as error:
                failed.append(_failure(str(entry["Id"]), error))
                continue
            good.append((str(entry["Id"]), message))
        for (entry_id, _), sent in zip(
            good, sqs_messages.send(session, queue, [m for _, m in good]), strict=True
        ):
            successful.append({"Id": entry_id, **sent.answer()})
        if good:
            _wake_after_commit(call, session, name)
    return {"Successful": successful, "Failed": failed}


# --- receiving -------------------------------------------------------------------------------


def _int_param(params: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not low <= int(value) <= high:
        raise errors.invalid_parameter(
            f"Value {value} for parameter {name} is invalid. Reason: Must be between {low} and "
            f"{high}, if provided."
        )
    return int(value)


def _system_attributes(
    message: sqs_messages.Received, names: set[str], where: Where
) -> dict[str, str]:
    if not names:
        return {}
    every = "All" in names
    values: dict[str, str | None] = {
        "SenderId": "smokehouse",
        "SentTimestamp": str(int(message.sent_at.timestamp() * 1000)),
        "ApproximateReceiveCount": str(message.receive_count),
        "ApproximateFirstReceiveTimestamp": str(int(message.first_received_at.timestamp() * 1000)),
        "SequenceNumber": None
        if message.sequence is None
        else str(message.sequence).rjust(20, "0"),
        "MessageDeduplicationId": message.dedup_id,
        "MessageGroupId": message.group_id,
        "AWSTraceHeader": ((message.system_attributes or {}).get("AWSTraceHeader") or {}).get(
            "StringValue"
        ),
        "DeadLetterQueueSourceArn": None
        if message.source_queue is None
        else where.arn(message.source_queue),
    }
    return {k: v for k, v in values.items() if v is not None and (every or k in names)}


def _message_attributes(
    attributes: dict[str, Any] | None, names: list[str]
) -> dict[str, Any] | None:
    if not attributes or not names:
        return None
    if "All" in names or ".*" in names:
        chosen = attributes
    else:
        prefixes = [n[:-2] for n in names if n.endswith(".*")]
        chosen = {
            k: v
            for k, v in attributes.items()
            if k in names or any(k.startswith(p + ".") for p in prefixes)
        }
    return chosen or None


def _answer(message: sqs_messages.Received, params: dict[str, Any], where: Where) -> dict[str, Any]:
    out: dict[str, Any] = {
        "MessageId": message.id,
        "ReceiptHandle": message.handle,
        "MD5OfBody": message.md5_body,
        "Body": message.body,
    }
    names = {*params.get("AttributeNames", []), *params.get("MessageSystemAttributeNames", [])}
    system = _system_attributes(message, names, where)
    if system:
        out["Attributes"] = system
    chosen = _message_attributes(message.attributes, list(params.get("MessageAttributeNames", [])))
    if chosen:
        out["MessageAttributes"] = chosen
        out["MD5OfMessageAttributes"] = message.md5_attributes
    return out


@dataclass(frozen=True, slots=True)
class _Try:
    got: list[sqs_messages.Received]
    until_visible: float | None  # with nothing got: seconds until a message turns visible
    default_wait: int  # the queue's ReceiveMessageWaitTimeSeconds


def _receive_once(settings: Settings, name: str, count: int, visibility: int | None) -> _Try:
    """One claim, in one unit of work."""
    with get_database(settings.sqlalchemy_url).session() as session:
        queue = sqs_queues.snapshot(session, name)
        default_wait = sqs_queues.attribute(queue, "ReceiveMessageWaitTimeSeconds")
        timeout = (
            sqs_queues.attribute(queue, "VisibilityTimeout") if visibility is None else visibility
        )
        got = sqs_messages.receive(session, queue, count, timeout)
        if got:
            return _Try(got, None, default_wait)
        now = utcnow()
        later = sqs_messages.next_visible(session, name, now)
        until = None if later is None else max(0.0, (later - now).total_seconds())
        return _Try([], until, default_wait)


@registry.operation(SQS, "ReceiveMessage", write=True)
async def receive_message(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Claim at once if there is something; else long-poll: subscribe to the queue's wake-ups,
    then check again (a send between the first check and the subscription is not missed) and
    wait for a wake-up, the next message to turn visible, or the deadline."""
    settings = call.require_settings()
    name = _queue_name(params, call)
    count = _int_param(params, "MaxNumberOfMessages", 1, 10) or 1
    visibility = _int_param(params, "VisibilityTimeout", 0, 43_200)
    wait = _int_param(params, "WaitTimeSeconds", 0, 20)
    where = _where(call)
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = await run_in_threadpool(_receive_once, settings, name, count, visibility)
    wait = attempt.default_wait if wait is None else wait
    if attempt.got or wait == 0:
        return {"Messages": [_answer(m, params, where) for m in attempt.got]} if attempt.got else {}
    deadline = started + wait
    async with long_poll.wake_ups(lambda: realtime.listen(settings, wake_channel(name))) as woke:
        while True:
            attempt = await run_in_threadpool(_receive_once, settings, name, count, visibility)
            left = deadline - loop.time()
            if attempt.got or left <= 0:
                got = attempt.got
                return {"Messages": [_answer(m, params, where) for m in got]} if got else {}
            until = attempt.until_visible
            await long_poll.wait(
                woke, min(left, RECHECK_SECONDS, until if until is not None else left)
            )


# --- after receiving -------------------------------------------------------------------------


@registry.operation(SQS, "DeleteMessage", write=True)
def delete_message(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        sqs_queues.snapshot(session, name)
        sqs_messages.delete_one(session, name, str(params["ReceiptHandle"]))
    return {}


def _each(
    params: dict[str, Any], call: AwsCall, action: Callable[[Any, str, dict[str, Any]], None]
) -> dict[str, Any]:
    """A batch of deletes or visibility changes: each entry succeeds or fails on its own."""
    name = _queue_name(params, call)
    entries = list(params.get("Entries") or [])
    _batch(entries)
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with call.session() as session:
        sqs_queues.snapshot(session, name)
        for entry in entries:
            try:  # an entry's checks come before its change: a failed one changed nothing
                action(session, name, entry)
            except AwsError as error:
                failed.append(_failure(str(entry["Id"]), error))
            else:
                successful.append({"Id": str(entry["Id"])})
    return {"Successful": successful, "Failed": failed}


@registry.operation(SQS, "DeleteMessageBatch", write=True)
def delete_message_batch(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Every well-formed handle is deleted in one statement; a malformed one fails its entry."""
    name = _queue_name(params, call)
    entries = list(params.get("Entries") or [])
    _batch(entries)
    handles: list[tuple[str, str]] = []
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for entry in entries:
        try:
            handles.append(sqs_messages.parse_handle(str(entry["ReceiptHandle"])))
        except AwsError as error:
            failed.append(_failure(str(entry["Id"]), error))
        else:
            successful.append({"Id": str(entry["Id"])})
    with call.session() as session:
        sqs_queues.snapshot(session, name)
        sqs_messages.delete_many(session, name, handles)
    return {"Successful": successful, "Failed": failed}


@registry.operation(SQS, "ChangeMessageVisibility", write=True)
def change_message_visibility(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    name = _queue_name(params, call)
    with call.session() as session:
        sqs_queues.snapshot(session, name)
        sqs_messages.change_visibility(
            session, name, str(params["ReceiptHandle"]), int(params["VisibilityTimeout"])
        )
        if int(params["VisibilityTimeout"]) == 0:
            _wake_after_commit(call, session, name)
    return {}


@registry.operation(SQS, "ChangeMessageVisibilityBatch", write=True)
def change_message_visibility_batch(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return _each(
        params,
        call,
        lambda session, name, entry: sqs_messages.change_visibility(
            session, name, str(entry["ReceiptHandle"]), int(entry.get("VisibilityTimeout", 0))
        ),
    )


# --- moving dead letters back ----------------------------------------------------------------


@registry.operation(SQS, "StartMessageMoveTask", write=True)
def start_message_move_task(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Moves every message of a dead-letter queue back at once (``MaxNumberOfMessagesPerSecond``
    is accepted and not needed: the move is one statement per message)."""
    where = _where(call)
    try:
        source = sqs_queues.name_from_arn(str(params["SourceArn"]), where)
        destination = (
            sqs_queues.name_from_arn(str(params["DestinationArn"]), where)
            if params.get("DestinationArn")
            else None
        )
    except AwsError:
        raise _no_source() from None
    with call.session() as session:
        try:
            sqs_queues.get(session, source)
            if destination is not None:
                sqs_queues.get(session, destination)
        except AwsError:
            raise _no_source() from None
        if not sqs_queues.dead_letter_sources(session, source, where):
            raise errors.invalid_parameter(
                "Source queue must be configured as a Dead Letter Queue."
            )
        handle = (utcnow().strftime("%Y%m%d%H%M%S%f") + "-" + source)[:64]
        moved = sqs_messages.move_back(session, source, destination)
        session.add(
            SqsMoveTask(
                handle=handle,
                source=source,
                destination=destination,
                max_per_second=params.get("MaxNumberOfMessagesPerSecond"),
                status="COMPLETED",
                moved=sum(moved.values()),
                to_move=sum(moved.values()),
                started_at=utcnow(),
            )
        )
        for target in moved:
            _wake_after_commit(call, session, target)
    return {"TaskHandle": handle}


def _no_source() -> AwsError:
    return errors.resource_not_found(
        "The resource that you specified for the SourceArn parameter doesn't exist."
    )


@registry.operation(SQS, "ListMessageMoveTasks", write=False)
def list_message_move_tasks(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    where = _where(call)
    try:
        source = sqs_queues.name_from_arn(str(params["SourceArn"]), where)
    except AwsError:
        raise _no_source() from None
    limit = int(params.get("MaxResults") or 1)
    with call.session() as session:
        sqs_queues.get(session, source)
        tasks = session.scalars(
            select(SqsMoveTask)
            .where(SqsMoveTask.source == source)
            .order_by(SqsMoveTask.started_at.desc())
            .limit(limit)
        ).all()
        return {
            "Results": [
                {
                    "TaskHandle": t.handle,
                    "Status": t.status,
                    "SourceArn": where.arn(t.source),
                    **({"DestinationArn": where.arn(t.destination)} if t.destination else {}),
                    **(
                        {"MaxNumberOfMessagesPerSecond": t.max_per_second}
                        if t.max_per_second
                        else {}
                    ),
                    "ApproximateNumberOfMessagesMoved": t.moved,
                    "ApproximateNumberOfMessagesToMove": t.to_move,
                    "StartedTimestamp": int(t.started_at.timestamp() * 1000),
                }
                for t in tasks
            ]
        }


@registry.operation(SQS, "CancelMessageMoveTask", write=True)
def cancel_message_move_task(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    handle = str(params["TaskHandle"])
    if not handle.isprintable():
        raise errors.resource_not_found("The task handle doesn't exist.")
    with call.session() as session:
        task = session.get(SqsMoveTask, handle)
        if task is None:
            raise errors.resource_not_found("The task handle doesn't exist.")
        if task.status != "RUNNING":
            raise errors.unsupported(f"The task is {task.status} and cannot be cancelled.")
    return {"ApproximateNumberOfMessagesMoved": task.moved}
