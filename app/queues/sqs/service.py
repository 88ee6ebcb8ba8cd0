"""What other domains call to use an SQS queue: the bus's ``arn:aws:sqs`` target, Step
Functions' ``sqs:sendMessage`` integration and the Scheduler's SQS target send through
:func:`send_message`; the autoscaler sizes a pool from :func:`depth`. They reach these through
registries filled in :mod:`app.wiring`, never by importing this package."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.aws.errors import AwsError
from app.queues.sqs import messages as sqs_messages
from app.queues.sqs import queues as sqs_queues
from app.queues.sqs.queues import Where


class QueueError(LookupError):
    """The queue does not exist, or the message is one SQS would refuse; ``code`` is SQS's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def queue_name(reference: str, account_id: str) -> str:
    """The queue a reference names: an ``arn:aws:sqs:…`` ARN, a queue URL, or a bare name."""
    where = Where("", account_id, "")
    try:
        if reference.startswith("arn:"):
            return sqs_queues.name_from_arn(reference, where)
        return sqs_queues.name_from_url(reference, where)
    except AwsError as error:
        raise QueueError(error.query_code or error.code, error.message) from None


def send_message(
    session: Session,
    queue: str,
    body: str,
    *,
    account_id: str,
    attributes: dict[str, dict[str, Any]] | None = None,
    group_id: str | None = None,
    dedup_id: str | None = None,
    delay_seconds: int | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """Send one message in the caller's unit of work; SendMessage's answer (``MessageId``,
    ``MD5OfMessageBody``, ...). ``queue`` is an ARN, a URL or a name. Raises
    :class:`QueueError` for a missing queue or a message SQS would refuse; nothing is stored
    then. A ``message_id`` makes a resend harmless: the second send raises
    :class:`~app.queues.sqs.messages.AlreadySent` and stores nothing. The caller wakes long
    polls after its commit with :func:`wake_channel`."""
    name = queue_name(queue, account_id)
    outgoing = sqs_messages.Outgoing(
        body=body,
        delay_seconds=delay_seconds,
        attributes=attributes or {},
        group_id=group_id,
        dedup_id=dedup_id,
        message_id=message_id,
    )
    try:
        row = sqs_queues.snapshot(session, name)
        sqs_messages.check(outgoing, row)
        (sent,) = sqs_messages.send(session, row, [outgoing])
    except AwsError as error:
        raise QueueError(error.query_code or error.code, error.message) from None
    return sent.answer()


def wake_channel(queue: str) -> str:
    """The live channel a long poll on ``queue`` waits on (publish ``{}`` after a commit)."""
    return f"sqs:{queue}"


def depth(session: Session, queue: str) -> tuple[int, int]:
    """``(visible, in flight)`` messages of an SQS queue; ``(0, 0)`` if it does not exist."""
    return sqs_queues.depth(session, queue)
