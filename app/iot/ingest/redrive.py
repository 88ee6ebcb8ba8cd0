"""Redrive an ingest dead letter: run its exact bytes through ingest again.

For a message refused for a reason that has since gone away: a device provisioned after its
first readings (``unknown_device``), a database that refused it (``unprocessable``) and was
fixed. The redrive is one unit of work: the message is classified, deduped and put on the bus
as if it had just arrived (at its original ``received_at``), and the dead letter is marked
redriven; refused again, it becomes a new dead letter. Redriving twice is refused, and a
message already ingested meanwhile is a duplicate (dedupe on device and seq), so nothing is
stored twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.config import Settings
from app.iot.ingest.batch import BatchResult, Incoming, write_batch
from app.iot.models import IngestDeadLetter
from app.iot.settings import IotSettings


class CannotRedrive(ValueError):
    """The dead letter does not exist, was redriven already, or its bytes were not kept."""


def redrive(
    session: Session, settings: Settings, iot: IotSettings, letter_id: int, now: datetime
) -> tuple[IngestDeadLetter, BatchResult]:
    letter = session.get(IngestDeadLetter, letter_id, with_for_update=True)
    if letter is None:
        raise CannotRedrive(f"no ingest dead letter {letter_id}")
    if letter.redriven_at is not None:
        raise CannotRedrive(f"dead letter {letter_id} was redriven at {letter.redriven_at}")
    if letter.raw is None:
        raise CannotRedrive(f"dead letter {letter_id} was not kept whole ({letter.kind})")
    item = Incoming(letter.topic, letter.raw, letter.received_at)
    result = write_batch(session, settings, iot, [item], now)
    letter.redriven_at = now
    return letter, result
