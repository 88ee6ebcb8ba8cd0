"""SQS messages on the work-queue store: send, receive, delete, change visibility, purge.

Delivery is at least once, as SQS's: a receive claims messages by moving their ``visible_at``
past the visibility timeout and giving them a new receipt, in one statement over rows locked
with ``SKIP LOCKED`` (PostgreSQL; SQLite serialises writers), re-checking visibility so two
receivers never get one message at once. A consumer that dies simply lets the timeout pass; a
message received ``maxReceiveCount`` times without being deleted moves to the queue's
dead-letter queue at its next receive (never a retry loop). FIFO queues keep order within a
message group (a group with a message in flight is skipped, other groups are not) and drop a
send whose deduplication id was seen in the last 5 minutes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, delete, exists, func, insert, select, tuple_, update
from sqlalchemy.orm import Session, aliased

from app.db import utcnow
from app.queues.models import PULL, QueueMessage, SqsDeduplication, SqsQueue, is_pull
from app.queues.sqs import errors
from app.queues.sqs import queues as sqs_queues
from app.queues.sqs.checksums import md5_of_attributes, md5_of_body
from app.queues.sqs.queues import Snapshot

DEDUP_WINDOW: Final = timedelta(minutes=5)
PURGE_INTERVAL: Final = timedelta(seconds=60)
MAX_RECEIVE: Final = 10
_DATA_TYPES: Final = ("String", "Number", "Binary")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


@dataclass(slots=True)
class Outgoing:
    """One message to send, as SendMessage / a SendMessageBatch entry gives it."""

    body: str
    delay_seconds: int | None = None
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    system_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_id: str | None = None
    dedup_id: str | None = None
    #: Given by a sender that may send again (a retried delivery): the same id twice stores
    #: one message (:class:`AlreadySent`).
    message_id: str | None = None


class AlreadySent(Exception):
    """A message with this id is stored already: a resend by an at-least-once sender."""


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    md5_body: str
    md5_attributes: str | None
    md5_system_attributes: str | None
    sequence: int | None

    def answer(self) -> dict[str, Any]:
        out: dict[str, Any] = {"MessageId": self.message_id, "MD5OfMessageBody": self.md5_body}
        if self.md5_attributes:
            out["MD5OfMessageAttributes"] = self.md5_attributes
        if self.md5_system_attributes:
            out["MD5OfMessageSystemAttributes"] = self.md5_system_attributes
        if self.sequence is not None:
            out["SequenceNumber"] = str(self.sequence).rjust(20, "0")
        return out


def check(message: Outgoing, queue: SqsQueue | Snapshot) -> None:
    """Refuse what SQS refuses: characters outside its set, sizes over the queue's maximum,
    malformed attributes, FIFO fields on the wrong kind of queue."""
    if message.body == "":
        raise errors.invalid_parameter("The request must contain the parameter MessageBody.")
    if any(not _allowed(ch) for ch in message.body):
        raise errors.invalid_contents("Invalid characters found. Deleted message.")
    size = len(message.body.encode()) + _attributes_size(message.attributes)
    limit = sqs_queues.attribute(queue, "MaximumMessageSize")
    if size > limit:
        raise errors.invalid_parameter(
            f"One or more parameters are invalid. Reason: Message must be shorter than {limit} "
            "bytes."
        )
    if message.delay_seconds is not None:
        if queue.fifo:
            raise errors.invalid_parameter(
                f"Value {message.delay_seconds} for parameter DelaySeconds is invalid. Reason: "
                "The request include parameter that is not valid for this queue type."
            )
        if not 0 <= message.delay_seconds <= 900:
            raise errors.invalid_parameter(
                f"Value {message.delay_seconds} for parameter DelaySeconds is invalid. Reason: "
                "DelaySeconds must be >= 0 and <= 900."
            )
    if len(message.attributes) > 10:
        raise errors.invalid_parameter(
            "Number of message attributes [11] exceeds the allowed maximum [10]."
        )
    for name in message.attributes:
        if (
            not ATTRIBUTE_NAME.match(name)
            or ".." in name
            or name.startswith(".")
            or name.endswith(".")
            or name.lower().startswith(("aws.", "amazon."))
        ):
            raise errors.invalid_parameter(
                f"The message attribute name '{name}' is invalid. Attribute name can contain "
                "A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters."
            )
    for name, value in {**message.attributes, **message.system_attributes}.items():
        data_type = str(value.get("DataType", ""))
        if data_type.split(".")[0] not in _DATA_TYPES:
            raise errors.invalid_parameter(
                f"The type of message (user) attribute '{name}' is invalid. You must use only "
                "the following supported type prefixes: Binary, Number, String."
            )
        if ("BinaryValue" in value) == ("StringValue" in value):
            raise errors.invalid_parameter(
                f"Message (user) attribute '{name}' must contain a non-empty value of type "
                f"'{data_type.split('.')[0]}'."
            )
    if queue.fifo:
        if not message.group_id:
            raise errors.invalid_parameter("The request must contain the parameter MessageGroupId.")
        content_dedup = queue.attributes.get("ContentBasedDeduplication") == "true"
        if not message.dedup_id and not content_dedup:
            raise errors.invalid_parameter(
                "The queue should either have ContentBasedDeduplication enabled or "
                "MessageDeduplicationId provided explicitly"
            )
    elif message.dedup_id:
        raise errors.invalid_parameter(
            "The request include parameter MessageDeduplicationId that is not valid for this "
            "queue type"
        )


def _allowed(ch: str) -> bool:
    """SQS's body characters: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000+."""
    code = ord(ch)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _attributes_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    size = 0
    for name, value in attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "BinaryValue" in value:
            size += len(base64.b64decode(value["BinaryValue"]))
        else:
            size += len(str(value.get("StringValue", "")).encode())
    return size


def send(session: Session, queue: SqsQueue | Snapshot, batch: Sequence[Outgoing]) -> list[Sent]:
    """Store checked messages in one statement; the caller's unit of work commits them.
    A FIFO send takes the queue's row lock for its sequence numbers and deduplication."""
    now = utcnow()
    locked = sqs_queues.get(session, queue.name, lock=True) if queue.fifo else None
    default_delay = sqs_queues.attribute(queue, "DelaySeconds")
    rows: list[dict[str, Any]] = []
    results: list[Sent] = []
    for message in batch:
        md5_attrs = md5_of_attributes(message.attributes)
        md5_system = md5_of_attributes(message.system_attributes)
        message_id = message.message_id or str(uuid.uuid4())
        if message.message_id and session.get(QueueMessage, message_id) is not None:
            raise AlreadySent(message_id)
        sequence = None
        dedup_id = message.dedup_id
        if queue.fifo:
            dedup_id = dedup_id or hashlib.sha256(message.body.encode()).hexdigest()
            key = _dedup_key(queue, message.group_id, dedup_id)
            seen = _seen(session, queue.name, key, now)
            if seen is not None:
                results.append(
                    Sent(
                        seen.message_id,
                        md5_of_body(message.body),
                        md5_attrs,
                        md5_system,
                        seen.sequence,
                    )
                )
                continue
            assert locked is not None
            locked.sequence += 1
            sequence = locked.sequence
            _remember(session, queue.name, key, message_id, sequence, now)
        delay = default_delay if message.delay_seconds is None else message.delay_seconds
        body_md5 = md5_of_body(message.body)
        rows.append(
            {
                "id": message_id,
                "queue": queue.name,
                "mode": PULL,
                "status": "queued",
                "attempts": 0,
                "created_at": now,
                "enqueued_at": now,
                "body": message.body,
                "message_attributes": message.attributes or None,
                "system_attributes": message.system_attributes or None,
                "md5_body": body_md5,
                "md5_attributes": md5_attrs,
                "visible_at": now + timedelta(seconds=delay),
                "group_id": message.group_id,
                "dedup_id": dedup_id if queue.fifo else None,
                "sequence": sequence,
            }
        )
        results.append(Sent(message_id, body_md5, md5_attrs, md5_system, sequence))
    if rows:
        session.execute(insert(QueueMessage), rows)
    return results


def _seen(session: Session, queue: str, key: str, now: datetime) -> SqsDeduplication | None:
    found = session.get(SqsDeduplication, (queue, key))
    if found is not None and found.expires_at > now:
        return found
    return None


def _dedup_key(queue: SqsQueue | Snapshot, group: str | None, dedup_id: str) -> str:
    """The id deduplication is by: per queue, or per message group with
    ``DeduplicationScope=messageGroup`` (then hashed to fit the column)."""
    if queue.attributes.get("DeduplicationScope") == "messageGroup":
        return hashlib.sha256(f"{group}\0{dedup_id}".encode()).hexdigest()
    return dedup_id


def _remember(
    session: Session, queue: str, dedup_id: str, message_id: str, sequence: int, now: datetime
) -> None:
    found = session.get(SqsDeduplication, (queue, dedup_id))
    if found is None:
        session.add(
            SqsDeduplication(
                queue=queue,
                dedup_id=dedup_id,
                message_id=message_id,
                sequence=sequence,
                expires_at=now + DEDUP_WINDOW,
            )
        )
    else:  # an expired entry: this send starts a new window
        found.message_id, found.sequence, found.expires_at = (
            message_id,
            sequence,
            now + DEDUP_WINDOW,
        )


# --- receiving -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A message as one receive got it (the row's values after the claim)."""

    id: str
    handle: str
    body: str
    md5_body: str
    md5_attributes: str | None
    attributes: dict[str, Any] | None
    system_attributes: dict[str, Any] | None
    receive_count: int
    sent_at: datetime
    first_received_at: datetime
    group_id: str | None
    dedup_id: str | None
    sequence: int | None
    source_queue: str | None


_COLUMNS = (
    QueueMessage.id,
    QueueMessage.body,
    QueueMessage.md5_body,
    QueueMessage.md5_attributes,
    QueueMessage.message_attributes,
    QueueMessage.system_attributes,
    QueueMessage.attempts,
    QueueMessage.created_at,
    QueueMessage.started_at,
    QueueMessage.group_id,
    QueueMessage.dedup_id,
    QueueMessage.sequence,
    QueueMessage.source_queue,
)


def receive(
    session: Session,
    queue: SqsQueue | Snapshot,
    count: int,
    visibility: int,
    now: datetime | None = None,
) -> list[Received]:
    """Claim up to ``count`` visible messages for ``visibility`` seconds: one ``UPDATE``
    over the rows a ``SKIP LOCKED`` subquery picked, returning them. Messages past the redrive
    policy's ``maxReceiveCount`` or the retention period are never claimed; :func:`_tidy` moves
    them to the dead-letter queue or deletes them."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=sqs_queues.attribute(queue, "MessageRetentionPeriod"))
    redrive = sqs_queues.redrive_target(queue)
    if queue.fifo:  # one FIFO receiver at a time per queue keeps each group's order
        sqs_queues.get(session, queue.name, lock=True)
    receipt = uuid.uuid4().hex
    picked = _candidates(queue, count, now, cutoff, None if redrive is None else redrive[1])
    rows = session.execute(
        update(QueueMessage)
        .where(QueueMessage.id.in_(picked), QueueMessage.visible_at <= now)
        .values(
            visible_at=now + timedelta(seconds=visibility),
            receipt=receipt,
            attempts=QueueMessage.attempts + 1,
            status="running",
            started_at=func.coalesce(QueueMessage.started_at, now),
        )
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)
    ).all()
    if len(rows) < count or _tidy_due(queue.name):
        _tidy(session, queue.name, cutoff, redrive, now)
    claimed = [
        Received(
            id=r.id,
            handle=_handle(r.id, receipt),
            body=r.body or "",
            md5_body=r.md5_body or md5_of_body(r.body or ""),
            md5_attributes=r.md5_attributes,
            attributes=r.message_attributes,
            system_attributes=r.system_attributes,
            receive_count=r.attempts,
            sent_at=r.created_at,
            first_received_at=r.started_at or now,
            group_id=r.group_id,
            dedup_id=r.dedup_id,
            sequence=r.sequence,
            source_queue=r.source_queue,
        )
        for r in rows
    ]
    if queue.fifo:
        claimed.sort(key=lambda r: r.sequence or 0)
    return claimed


TIDY_SECONDS: Final = 1.0
_tidied: dict[str, float] = {}


def _tidy_due(queue: str) -> bool:
    """A full queue is tidied at most once a second per process (its scan is not free)."""
    return time.monotonic() - _tidied.get(queue, 0.0) >= TIDY_SECONDS


def _tidy(
    session: Session, queue: str, cutoff: datetime, redrive: tuple[str, int] | None, now: datetime
) -> None:
    """Delete messages past retention, move those past ``maxReceiveCount`` (and visible again)
    to the dead-letter queue -- SQS does both as the messages come up for receiving."""
    _tidied[queue] = time.monotonic()
    mine = and_(QueueMessage.queue == queue, is_pull(QueueMessage.mode))
    session.execute(
        delete(QueueMessage)
        .where(mine, QueueMessage.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    if redrive is not None:
        dead = (
            select(QueueMessage.id)
            .where(mine, QueueMessage.visible_at <= now, QueueMessage.attempts >= redrive[1])
            .limit(1000)
            .with_for_update(skip_locked=True)
            .cte("dead")
        )
        _dead_letter(session, queue, redrive[0], select(dead.c.id), now)


def _candidates(
    queue: SqsQueue | Snapshot, count: int, now: datetime, cutoff: datetime, cap: int | None
) -> Any:
    """The ids a receive may claim, locked (``SKIP LOCKED``), as a select for an ``IN``."""
    conditions = [
        QueueMessage.queue == queue.name,
        is_pull(QueueMessage.mode),
        QueueMessage.visible_at <= now,
        QueueMessage.created_at >= cutoff,
    ]
    if cap is not None:
        conditions.append(QueueMessage.attempts < cap)
    query = select(QueueMessage.id).where(*conditions)
    if queue.fifo:
        busy = aliased(QueueMessage)
        query = query.where(
            ~exists().where(
                busy.queue == queue.name,
                is_pull(busy.mode),
                busy.group_id == QueueMessage.group_id,
                busy.visible_at > now,
                busy.receipt.is_not(None),
            )
        ).order_by(QueueMessage.sequence)
    else:
        query = query.order_by(QueueMessage.visible_at)
    # A CTE: PostgreSQL evaluates a locking one exactly once (a plain IN-subquery may be
    # re-run by the planner and claim more than ``count``).
    picked = query.limit(count).with_for_update(skip_locked=True).cte("picked")
    return select(picked.c.id)


def _dead_letter(session: Session, source: str, target: str, ids: Any, now: datetime) -> None:
    session.execute(
        update(QueueMessage)
        .where(QueueMessage.id.in_(ids))
        .values(
            queue=target,
            source_queue=source,
            visible_at=now,
            receipt=None,
            attempts=0,
            status="queued",
        )
        .execution_options(synchronize_session=False)
    )


def _handle(message_id: str, receipt: str) -> str:
    return base64.b64encode(f"{message_id}:{receipt}".encode()).decode()


def parse_handle(handle: str) -> tuple[str, str]:
    """``(message id, receipt)`` of a receipt handle; ``ReceiptHandleIsInvalid`` if it is not
    one of ours."""
    try:
        message_id, _, receipt = base64.b64decode(handle, validate=True).decode().partition(":")
        uuid.UUID(message_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.receipt_invalid(handle) from None
    if len(receipt) != 32:
        raise errors.receipt_invalid(handle)
    return message_id, receipt


def next_visible(session: Session, queue: str, now: datetime) -> datetime | None:
    """When the next message of the queue becomes visible (a delay or a visibility timeout)."""
    return session.scalar(
        select(func.min(QueueMessage.visible_at)).where(
            QueueMessage.queue == queue,
            is_pull(QueueMessage.mode),
            QueueMessage.visible_at > now,
        )
    )


# --- after receiving -----------------------------------------------------------------------


def delete_one(session: Session, queue: str, handle: str) -> None:
    """Delete the message if ``handle`` is its latest receipt. An older receipt, or a message
    already deleted, succeeds and changes nothing -- as SQS."""
    delete_many(session, queue, [parse_handle(handle)])


def delete_many(session: Session, queue: str, handles: Sequence[tuple[str, str]]) -> None:
    """Delete messages by parsed ``(message id, receipt)`` handles, in one statement. The rows
    are found by primary key alone (a materialised CTE) and only then checked for the queue: a
    ``queue =`` condition beside the key let PostgreSQL plan a scan of the queue's whole index
    when its statistics were stale (0.4-3.5 ms at 20,000 messages instead of 0.05 ms)."""
    if not handles:
        return
    found = (
        select(QueueMessage.id, QueueMessage.queue)
        .where(
            QueueMessage.id.in_([message_id for message_id, _ in handles]),
            tuple_(QueueMessage.id, QueueMessage.receipt).in_(list(handles)),
        )
        .cte("found")
        .prefix_with("MATERIALIZED")
    )
    session.execute(
        delete(QueueMessage)
        .where(QueueMessage.id.in_(select(found.c.id).where(found.c.queue == queue)))
        .execution_options(synchronize_session=False)
    )


def change_visibility(session: Session, queue: str, handle: str, seconds: int) -> None:
    """Make an in-flight message visible again after ``seconds`` (0: at once)."""
    if not 0 <= seconds <= 43_200:
        raise errors.invalid_parameter(
            f"Value {seconds} for parameter VisibilityTimeout is invalid. Reason: Must be between "
            "0 and 43200, if provided."
        )
    message_id, receipt = parse_handle(handle)
    now = utcnow()
    row = session.get(QueueMessage, message_id, with_for_update=True)
    if row is None or row.queue != queue or row.receipt != receipt:
        raise errors.receipt_invalid(handle)
    if row.visible_at is None or row.visible_at <= now:
        raise errors.not_in_flight()
    row.visible_at = now + timedelta(seconds=seconds)


def purge(session: Session, queue: SqsQueue) -> None:
    """Delete every message of the queue; once per 60 s, as SQS allows."""
    now = utcnow()
    if queue.purged_at is not None and now - queue.purged_at < PURGE_INTERVAL:
        raise errors.purge_in_progress(queue.name)
    queue.purged_at = now
    session.execute(
        delete(QueueMessage).where(QueueMessage.queue == queue.name, is_pull(QueueMessage.mode))
    )


def move_back(session: Session, source: str, destination: str | None) -> dict[str, int]:
    """Move the messages of dead-letter queue ``source`` to ``destination`` (each to the queue
    it was dead-lettered from when None, if that queue still exists); how many went where.
    They arrive visible, with a fresh receive count."""
    now = utcnow()
    fresh = {"visible_at": now, "receipt": None, "attempts": 0, "status": "queued"}
    in_source = and_(QueueMessage.queue == source, is_pull(QueueMessage.mode))
    if destination is not None:
        targets: list[tuple[str, Any]] = [(destination, in_source)]
    else:
        origins = session.scalars(
            select(QueueMessage.source_queue).where(in_source).distinct()
        ).all()
        targets = [
            (origin, and_(in_source, QueueMessage.source_queue == origin))
            for origin in origins
            if origin is not None and session.get(SqsQueue, origin) is not None
        ]
    moved: dict[str, int] = {}
    for target, which in targets:
        result = session.execute(
            update(QueueMessage)
            .where(which)
            .values(queue=target, source_queue=None, **fresh)
            .execution_options(synchronize_session=False)
        )
        if count := int(getattr(result, "rowcount", 0) or 0):
            moved[target] = count
    return moved
