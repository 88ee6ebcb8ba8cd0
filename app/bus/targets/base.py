"""What a target adapter is: validate a Target at PutTargets time, deliver one payload later.

An adapter raises :class:`TargetFailure` to fail a delivery attempt; ``retryable`` decides between
another attempt (with backoff, honouring ``retry_after``) and the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database


class TargetFailure(Exception):
    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str = "TargetError",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass(frozen=True)
class DeliveryContext:
    """Everything one delivery attempt may need.

    ``delivery_id`` is stable across attempts: adapters that write somewhere idempotently (another
    bus, a Celery task id) derive their keys from it, so a retried attempt changes nothing twice.
    ``enqueue_deliveries`` is for adapters that create deliveries (the bus target): register it
    on your own session's unit of work (:func:`app.db.after_commit`), so it runs after the commit.
    ``memo`` is the batch's: a value cached there is as old as the batch (milliseconds).
    """

    delivery_id: str
    attempt: int
    event: dict[str, Any]
    spec: dict[str, Any]
    rule_arn: str
    settings: Settings
    database: Database
    enqueue_deliveries: Callable[[list[str]], object]
    #: Shared by the deliveries of one batch: what one delivery looked up (an API destination
    #: with its connection) serves the others, read once per batch instead of once each.
    memo: dict[Any, Any] = field(default_factory=dict)


class TargetAdapter(Protocol):
    """One kind of target, recognised by its ARN."""

    kind: str

    def accepts(self, arn: str) -> bool: ...

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        """A problem with this Target (PutTargets' failed entry), or None."""
        ...

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        """Deliver; return an HTTP-like status code when there is one. Raise TargetFailure."""
        ...
