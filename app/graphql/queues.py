"""``sqsQueues``: the SQS-compatible queues, on the same store as the work queues (their
messages are ``queueMessages(queue: …)``), with SQS's three approximate counts and their
redrive policy -- what the dashboard's queue view shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.orm import Session
from strawberry.types import Info

from app.graphql.context import Context, IsAuthenticated, in_session
from app.queues.models import SqsQueue as SqsQueueRow
from app.queues.sqs import queues as sqs_queues


@strawberry.type
class SqsQueue:
    name: str
    arn: str
    fifo: bool
    visible: int = strawberry.field(description="ApproximateNumberOfMessages.")
    in_flight: int = strawberry.field(description="ApproximateNumberOfMessagesNotVisible.")
    delayed: int = strawberry.field(description="ApproximateNumberOfMessagesDelayed.")
    visibility_timeout: int
    message_retention_period: int
    dead_letter_queue: str | None = strawberry.field(
        description="The redrive policy's dead-letter queue (a name), if any."
    )
    max_receive_count: int | None
    created_at: datetime


def _queue(session: Session, row: SqsQueueRow, arn: str) -> SqsQueue:
    visible, in_flight, delayed = sqs_queues.counts(session, row.name)
    redrive = sqs_queues.redrive_target(row)
    return SqsQueue(
        name=row.name,
        arn=arn,
        fifo=row.fifo,
        visible=visible,
        in_flight=in_flight,
        delayed=delayed,
        visibility_timeout=sqs_queues.attribute(row, "VisibilityTimeout"),
        message_retention_period=sqs_queues.attribute(row, "MessageRetentionPeriod"),
        dead_letter_queue=redrive[0] if redrive else None,
        max_receive_count=redrive[1] if redrive else None,
        created_at=row.created_at,
    )


async def resolve_sqs_queues(info: Info[Context, Any], prefix: str | None = None) -> list[SqsQueue]:
    """SQS queues by name (those starting with ``prefix``), as ``ListQueues`` finds them."""
    settings = info.context.settings
    where = sqs_queues.Where(settings.region, settings.account_id, "")

    def work(session: Session) -> list[SqsQueue]:
        rows = sqs_queues.list_queues(session, prefix)
        return [_queue(session, r, where.arn(r.name)) for r in rows]

    return await in_session(settings, work)


@strawberry.type
class QueuesQuery:
    sqs_queues: list[SqsQueue] = strawberry.field(
        resolver=resolve_sqs_queues, permission_classes=[IsAuthenticated]
    )
