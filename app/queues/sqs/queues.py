"""SQS queues: names, URLs and ARNs, attributes as SQS validates and reports them, and tags.

Attribute values travel as strings, as in SQS; a queue row keeps the ones a caller can set
(defaults filled in) and the counts are computed when asked for.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.queues.models import QueueMessage, SqsQueue, is_pull
from app.queues.sqs import errors

NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
FIFO_SUFFIX: Final = ".fifo"
MAX_TAGS: Final = 50

#: Settable attributes, their defaults and their checks (None: taken as given).
_RANGES: Final[dict[str, tuple[int, int]]] = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1_048_576),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43_200),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400),
}
DEFAULTS: Final[dict[str, str]] = {
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": "30",
    "SqsManagedSseEnabled": "true",
}
_FREE: Final = frozenset({"Policy", "KmsMasterKeyId", "RedriveAllowPolicy", "SqsManagedSseEnabled"})
_FIFO_ONLY: Final[dict[str, tuple[str, ...]]] = {
    "ContentBasedDeduplication": ("true", "false"),
    "DeduplicationScope": ("messageGroup", "queue"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
SETTABLE: Final = frozenset({*_RANGES, *_FREE, *_FIFO_ONLY, "RedrivePolicy", "FifoQueue"})
COMPUTED: Final = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)


@dataclass(frozen=True, slots=True)
class Where:
    """Where the caller is: the region and account ARNs carry, the endpoint URLs start with."""

    region: str
    account_id: str
    endpoint: str

    def url(self, name: str) -> str:
        return f"{self.endpoint}/{self.account_id}/{name}"

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"


def name_from_url(url: str, where: Where) -> str:
    """The queue a ``QueueUrl`` names: ``<anything>/<account>/<name>`` (SQS ignores the host,
    as clients reach it under many names); a bare name is taken too, as the AWS CLI allows."""
    path = urlsplit(url).path if "://" in url else url
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] != where.account_id:
        raise errors.queue_does_not_exist()
    if not parts or len(parts) > 2:
        raise errors.invalid_parameter(f"Value {url!r} for parameter QueueUrl is invalid.")
    return known_name(parts[-1])


def known_name(name: str) -> str:
    """``name`` if it could name a queue; a name no queue can have does not exist."""
    if not QUEUE_NAME.match(name):
        raise errors.queue_does_not_exist()
    return name


def name_from_arn(arn: str, where: Where) -> str:
    """The queue an ``arn:aws:sqs:<region>:<account>:<name>`` names (region not checked: one
    store serves every region, as for the bus)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"]:
        raise errors.invalid_parameter(f"Value {arn!r} for parameter QueueArn is invalid.")
    if parts[4] != where.account_id:
        raise errors.queue_does_not_exist()
    return known_name(parts[5])


def get(session: Session, name: str, *, lock: bool = False) -> SqsQueue:
    query = select(SqsQueue).where(SqsQueue.name == name)
    if lock:
        query = query.with_for_update()
    queue = session.scalar(query)
    if queue is None:
        raise errors.queue_does_not_exist()
    return queue


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A queue as the message paths need it (name, kind, attributes), read at most every
    :data:`SNAPSHOT_SECONDS`. SQS documents that attribute changes take up to 60 s to apply,
    and a deleted queue may accept messages for a while; here both take up to 2 s in other
    processes, and none in the one that made the change."""

    name: str
    fifo: bool
    attributes: dict[str, str]


SNAPSHOT_SECONDS: Final = 2.0
_snapshots: dict[tuple[str, str], tuple[float, Snapshot]] = {}


def snapshot(session: Session, name: str) -> Snapshot:
    """The queue's snapshot (``QueueDoesNotExist`` if it has none); cached per database."""
    bind = session.get_bind()
    key = (str(getattr(bind, "url", id(bind))), name)
    found = _snapshots.get(key)
    now = time.monotonic()
    if found is not None and found[0] > now:
        return found[1]
    queue = get(session, name)
    taken = Snapshot(queue.name, queue.fifo, dict(queue.attributes))
    _snapshots[key] = (now + SNAPSHOT_SECONDS, taken)
    return taken


def changed(name: str) -> None:
    """Forget this process's snapshots of a queue that was changed or deleted here."""
    for key in [k for k in _snapshots if k[1] == name]:
        _snapshots.pop(key, None)


def check_attributes(
    attributes: Mapping[str, str], *, fifo: bool, where: Where, session: Session
) -> dict[str, str]:
    """Settable attributes, checked as SQS checks them; unknown names and values refused."""
    checked: dict[str, str] = {}
    for name, value in attributes.items():
        if name not in SETTABLE:
            raise errors.invalid_attribute_name(name)
        value = str(value)
        if name in _RANGES:
            low, high = _RANGES[name]
            if not (value.lstrip("-").isdigit() and low <= int(value) <= high):
                raise errors.invalid_attribute_value(f"Invalid value for the parameter {name}.")
            value = str(int(value))
        elif name in _FIFO_ONLY:
            if not fifo:
                raise errors.invalid_attribute_name(name)
            if value not in _FIFO_ONLY[name]:
                raise errors.invalid_attribute_value(f"Invalid value for the parameter {name}.")
        elif name == "FifoQueue":
            if value.lower() != str(fifo).lower():
                raise errors.invalid_attribute_value(
                    "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is "
                    "not supported."
                    if value.lower() in ("true", "false")
                    else "Invalid value for the parameter FifoQueue."
                )
            if not fifo:
                continue  # FifoQueue=false is accepted on a standard queue and not reported
            value = "true"
        elif name == "RedrivePolicy":
            value = _redrive_policy(value, where=where, session=session, fifo=fifo)
        checked[name] = value
    return checked


def _redrive_policy(value: str, *, where: Where, session: Session, fifo: bool) -> str:
    if value == "":
        return ""  # clears the policy
    try:
        policy = json.loads(value)
        target = name_from_arn(str(policy["deadLetterTargetArn"]), where)
        count = int(policy["maxReceiveCount"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise errors.invalid_parameter(
            "Value " + value + " for parameter RedrivePolicy is invalid. Reason: Redrive policy "
            "is not a valid JSON map with deadLetterTargetArn and maxReceiveCount."
        ) from None
    if not 1 <= count <= 1000:
        raise errors.invalid_parameter(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value for "
            f"maxReceiveCount: {count}, valid values are from 1 to 1000 both inclusive."
        )
    dead = session.get(SqsQueue, target)
    if dead is None:
        raise errors.invalid_parameter(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Dead letter target "
            "does not exist."
        )
    if dead.fifo != fifo:
        raise errors.invalid_parameter(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue "
            "must be same type of queue as the source."
        )
    return json.dumps(
        {"deadLetterTargetArn": where.arn(target), "maxReceiveCount": count},
        separators=(",", ":"),
    )


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(str(value)) > 256:
            raise errors.invalid_parameter(
                "Tag keys must be 1 to 128 characters and values at most 256."
            )
        if key.lower().startswith("aws:"):
            raise errors.invalid_parameter("Tag keys must not start with the reserved aws: prefix.")
    return {k: str(v) for k, v in tags.items()}


def create(
    session: Session,
    name: str,
    attributes: Mapping[str, str],
    tags: Mapping[str, str],
    where: Where,
) -> SqsQueue:
    """Create the queue, or find it if one of that name has the same attributes (SQS's
    idempotent create); a different value for a given attribute is ``QueueNameExists``."""
    fifo = name.endswith(FIFO_SUFFIX)
    base = name[: -len(FIFO_SUFFIX)] if fifo else name
    if not NAME.match(base):
        raise errors.invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    wants_fifo = str(attributes.get("FifoQueue", "false")).lower() == "true"
    if wants_fifo and not fifo:
        raise errors.invalid_parameter(
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or "
            "underscores, must end with .fifo suffix and be 1 to 80 in length."
        )
    if fifo and not wants_fifo:
        raise errors.invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    checked = check_attributes(attributes, fifo=fifo, where=where, session=session)
    existing = session.get(SqsQueue, name)
    if existing is not None:
        if any(existing.attributes.get(k, DEFAULTS.get(k)) != v for k, v in checked.items()):
            raise errors.queue_name_exists(name)
        return existing
    if len(tags) > MAX_TAGS:
        raise errors.invalid_parameter(f"Too many tags: at most {MAX_TAGS} per queue.")
    now = utcnow()
    values = {**DEFAULTS, **checked}
    if fifo:
        values.setdefault("ContentBasedDeduplication", "false")
        values.setdefault("DeduplicationScope", "queue")
        values.setdefault("FifoThroughputLimit", "perQueue")
    queue = SqsQueue(
        name=name,
        fifo=fifo,
        attributes={k: v for k, v in values.items() if v != ""},
        tags=check_tags(tags),
        sequence=0,
        created_at=now,
        modified_at=now,
    )
    session.add(queue)
    session.flush()
    return queue


def set_attributes(
    session: Session, queue: SqsQueue, attributes: Mapping[str, str], where: Where
) -> None:
    checked = check_attributes(attributes, fifo=queue.fifo, where=where, session=session)
    merged = {**queue.attributes, **checked}
    queue.attributes = {k: v for k, v in merged.items() if v != ""}
    queue.modified_at = utcnow()
    changed(queue.name)


def attribute(queue: SqsQueue | Snapshot, name: str) -> int:
    """An integer attribute's value (its default when unset)."""
    return int(queue.attributes.get(name, DEFAULTS.get(name, "0")))


def redrive_target(queue: SqsQueue | Snapshot) -> tuple[str, int] | None:
    """``(dead-letter queue name, maxReceiveCount)`` if the queue has a redrive policy."""
    raw = queue.attributes.get("RedrivePolicy")
    if not raw:
        return None
    policy = json.loads(raw)
    return str(policy["deadLetterTargetArn"]).rsplit(":", 1)[1], int(policy["maxReceiveCount"])


def counts(session: Session, name: str, now: datetime | None = None) -> tuple[int, int, int]:
    """``(visible, in flight, delayed)``: SQS's three approximate counts."""
    now = now or utcnow()
    received = QueueMessage.receipt.is_not(None)
    later = QueueMessage.visible_at > now
    row = session.execute(
        select(
            func.count(case((QueueMessage.visible_at <= now, 1))),
            func.count(case((and_(later, received), 1))),
            func.count(case((and_(later, QueueMessage.receipt.is_(None)), 1))),
        ).where(QueueMessage.queue == name, is_pull(QueueMessage.mode))
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def depth(session: Session, name: str) -> tuple[int, int]:
    """``(visible, in flight)`` of a queue -- what the autoscaler sizes a pool from."""
    visible, in_flight, _ = counts(session, name)
    return visible, in_flight


def report(session: Session, queue: SqsQueue, names: list[str], where: Where) -> dict[str, str]:
    """``GetQueueAttributes``: the named attributes (``All`` for every one) that have values."""
    wanted = set(names)
    if "All" in wanted:
        wanted = {*SETTABLE, *COMPUTED}
    for name in wanted:
        if name not in SETTABLE and name not in COMPUTED:
            raise errors.invalid_attribute_name(name)
    out: dict[str, str] = {}
    for name in sorted(wanted & SETTABLE):
        value = queue.attributes.get(name)
        if value is not None:
            out[name] = value
    if wanted & {n for n in COMPUTED if n.startswith("Approximate")}:
        visible, in_flight, delayed = counts(session, queue.name)
        for name, number in (
            ("ApproximateNumberOfMessages", visible),
            ("ApproximateNumberOfMessagesNotVisible", in_flight),
            ("ApproximateNumberOfMessagesDelayed", delayed),
        ):
            if name in wanted:
                out[name] = str(number)
    if "CreatedTimestamp" in wanted:
        out["CreatedTimestamp"] = str(int(queue.created_at.timestamp()))
    if "LastModifiedTimestamp" in wanted:
        out["LastModifiedTimestamp"] = str(int(queue.modified_at.timestamp()))
    if "QueueArn" in wanted:
        out["QueueArn"] = where.arn(queue.name)
    return out


def list_names(session: Session, prefix: str | None) -> list[str]:
    return list(session.scalars(_listed(select(SqsQueue.name), prefix)))


def list_queues(session: Session, prefix: str | None) -> list[SqsQueue]:
    """The queues ``ListQueues`` would name (those starting with ``prefix``), by name."""
    return list(session.scalars(_listed(select(SqsQueue), prefix)))


def _listed(query: Any, prefix: str | None) -> Any:
    if prefix:
        query = query.where(SqsQueue.name.startswith(prefix, autoescape=True))
    return query.order_by(SqsQueue.name)


def dead_letter_sources(session: Session, name: str, where: Where) -> list[str]:
    """Queues whose redrive policy names this one (``ListDeadLetterSourceQueues``)."""
    arn = where.arn(name)
    return [
        q.name
        for q in session.scalars(select(SqsQueue).order_by(SqsQueue.name))
        if redrive_target(q) is not None and q.attributes.get("RedrivePolicy", "").find(arn) >= 0
    ]


def tag(queue: SqsQueue, tags: Mapping[str, str]) -> None:
    merged = {**queue.tags, **check_tags(tags)}
    if len(merged) > MAX_TAGS:
        raise errors.invalid_parameter(f"Too many tags: at most {MAX_TAGS} per queue.")
    queue.tags = merged


def untag(queue: SqsQueue, keys: list[str]) -> None:
    queue.tags = {k: v for k, v in queue.tags.items() if k not in set(keys)}


def as_strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()}
