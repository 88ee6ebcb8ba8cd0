"""The outbox sweeper: which pending deliveries count as lost, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.bus.models import Delivery, Event
from app.bus.outbox import due_for_sweep
from app.db import get_database, utcnow

pytestmark = pytest.mark.integration

GRACE = timedelta(seconds=30)


def add(session: object, name: str, **fields: object) -> None:
    now = utcnow()
    values: dict[str, object] = {
        "id": name,
        "event_id": "e1",
        "bus_name": "default",
        "rule_id": "r1",
        "rule_name": "r",
        "target_id": name,
        "target_arn": "arn:smokehouse:handler:echo",
        "target_spec": {"Id": name, "Arn": "arn:smokehouse:handler:echo"},
        "status": "pending",
        "created_at": now,
        "next_attempt_at": now,
        "enqueued_at": now,
    }
    values.update(fields)
    session.add(Delivery(**values))  # type: ignore[attr-defined]


def test_sweeper_picks_only_lost_deliveries(database_url: str) -> None:
    now = utcnow()
    old = now - timedelta(minutes=5)
    database = get_database(database_url)
    with database.session() as session:
        session.add(
            Event(
                id="e1",
                bus_name="default",
                source="s",
                detail_type="d",
                time=now,
                envelope={},
            )
        )
        session.flush()
        add(session, "fresh")  # just enqueued: its task is on the way
        add(session, "lost", enqueued_at=old, next_attempt_at=old)  # enqueue never arrived
        add(session, "long-retry", enqueued_at=None, next_attempt_at=now - timedelta(seconds=1))
        add(session, "future-retry", enqueued_at=None, next_attempt_at=now + timedelta(hours=1))
        add(session, "claimed", enqueued_at=old, next_attempt_at=old, claimed_until=now + GRACE)
        add(session, "expired-claim", enqueued_at=old, next_attempt_at=old, claimed_until=old)
        add(session, "done", status="succeeded", enqueued_at=old, next_attempt_at=old)
        add(session, "dead", status="dead", enqueued_at=old, next_attempt_at=old)
    with database.session() as session:
        picked = set(due_for_sweep(session, now, GRACE))
    assert picked == {"lost", "long-retry", "expired-claim"}
    # Marked as enqueued: the next pass within the grace period leaves them alone.
    with database.session() as session:
        assert due_for_sweep(session, now + timedelta(seconds=1), GRACE) == []


def test_archive_retention_purges_only_expired_copies(database_url: str) -> None:
    from app.bus.archives import purge_expired
    from app.bus.models import Archive, ArchivedEvent

    now = utcnow()
    database = get_database(database_url)
    with database.session() as session:
        session.add(
            Event(id="e1", bus_name="default", source="s", detail_type="d", time=now, envelope={})
        )
        session.add(
            Event(id="e2", bus_name="default", source="s", detail_type="d", time=now, envelope={})
        )
        session.add(Archive(name="week", bus_name="default", retention_days=7))
        session.add(Archive(name="forever", bus_name="default", retention_days=0))
        session.flush()
        old, recent = now - timedelta(days=8), now - timedelta(days=6)
        session.add(ArchivedEvent(archive_name="week", event_id="e1", time=old, size=1))
        session.add(ArchivedEvent(archive_name="week", event_id="e2", time=recent, size=1))
        session.add(ArchivedEvent(archive_name="forever", event_id="e1", time=old, size=1))
    with database.session() as session:
        assert purge_expired(session, now) == 1
    with database.session() as session:
        kept = {(a.archive_name, a.event_id) for a in session.query(ArchivedEvent)}
    assert kept == {("week", "e2"), ("forever", "e1")}
