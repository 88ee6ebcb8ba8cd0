"""A delivery whose workers keep dying (a message that kills whichever worker takes it) is
dead-lettered at its next claim once it was claimed more than MaximumRetryAttempts + 1 times,
instead of being attempted (and killing a worker) forever.

Before: a claim that never recorded an outcome was simply claimed again after it lapsed, with no
limit: the retry policy only counted attempts that came back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from app.bus import service as bus
from app.bus.arns import Scope
from app.bus.delivery import deliver
from app.bus.events import put_events
from app.bus.models import DeadLetter, Delivery
from app.config import Settings
from app.db import get_database, utcnow
from app.handlers import HandlerContext, handler
from tests.services import migrate

pytestmark = pytest.mark.integration

CALLS: list[Any] = []


@handler("receive-cap-probe")
def probe(payload: Any, context: HandlerContext) -> Any:
    CALLS.append(payload)
    return None


def test_a_delivery_claimed_past_its_cap_is_dead_lettered_unattempted(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    migrate(settings.sqlalchemy_url)
    database = get_database(settings.sqlalchemy_url)
    target = {
        "Id": "h",
        "Arn": "arn:smokehouse:handler:receive-cap-probe",
        "RetryPolicy": {"MaximumRetryAttempts": 2},
    }
    with database.session() as session:
        bus.put_rule(session, name="cap", event_pattern={"source": ["test.cap"]})
        assert bus.put_targets(session, None, "cap", [target]) == []
        put = put_events(
            session,
            [{"Source": "test.cap", "DetailType": "Poison", "Detail": "{}"}],
            Scope(settings.region, settings.account_id),
        )
    [delivery_id] = put.delivery_ids
    # Three claims whose workers died before recording anything: their claims lapsed.
    with database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(attempts=3, claimed_until=utcnow(), next_attempt_at=utcnow())
        )
    CALLS.clear()
    assert deliver(settings, delivery_id) == "failed"
    assert CALLS == []  # not attempted a fourth time
    with database.session() as session:
        [letter] = session.scalars(select(DeadLetter).where(DeadLetter.delivery_id == delivery_id))
        assert letter.error_code == "ReceiveCapExceeded"
        assert letter.attempts == 4
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert delivery.status == "dead"
