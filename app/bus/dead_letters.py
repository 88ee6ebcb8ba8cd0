"""Dead letters: list them, and redrive one (send its delivery again from scratch).

Services take a Session and never commit. Redrive resets the delivery to a fresh pending one; the
caller commits and then enqueues ``delivery.id`` (commit, then enqueue). ``enqueued_at`` is set to
now so that, if that enqueue is lost, the outbox sweeper re-sends it after its grace period.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.bus.errors import IllegalStatus, ResourceNotFound
from app.bus.models import DeadLetter, Delivery
from app.db import utcnow


def list_dead_letters(
    session: Session,
    *,
    limit: int = 50,
    include_redriven: bool = False,
    bus_name: str | None = None,
) -> list[DeadLetter]:
    """Newest first; redriven ones are hidden unless asked for."""
    statement = select(DeadLetter).order_by(DeadLetter.created_at.desc(), DeadLetter.id.desc())
    if not include_redriven:
        statement = statement.where(DeadLetter.redriven_at.is_(None))
    if bus_name is not None:
        statement = statement.where(DeadLetter.bus_name == bus_name)
    return list(session.scalars(statement.limit(max(1, limit))))


def redrive(session: Session, dead_letter_id: int) -> Delivery:
    """Reset the dead letter's delivery to pending with a fresh retry budget.

    A dead letter is redriven once: if the delivery dies again, it gets a new dead letter, and
    that is the one to redrive (so the history of each failure stays readable).
    """
    letter = session.get(DeadLetter, dead_letter_id)
    if letter is None:
        raise ResourceNotFound(f"Dead letter {dead_letter_id} does not exist.")
    if letter.redriven_at is not None:
        raise IllegalStatus(
            f"Dead letter {dead_letter_id} was already redriven at "
            f"{letter.redriven_at.isoformat(timespec='seconds')}."
        )
    delivery = session.get(Delivery, letter.delivery_id)
    if delivery is None:  # the FK cascades, so only a concurrent delete gets here
        raise ResourceNotFound(f"Delivery {letter.delivery_id} does not exist.")
    if delivery.status == "succeeded":
        raise IllegalStatus(f"Delivery {delivery.id} already succeeded.")
    now = utcnow()
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.created_at = now  # the age budget (MaximumEventAgeInSeconds) starts again too
    delivery.next_attempt_at = now
    delivery.claimed_until = None
    delivery.enqueued_at = now
    delivery.completed_at = None
    letter.redriven_at = now
    session.flush()
    return delivery
