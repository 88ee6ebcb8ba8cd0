"""The PostgreSQL engine's shortcuts keep their promises: a connection idle for a while is
pinged and replaced if dead, a hot one fails once as transient and the pool recovers; rows
inserted as one JSON parameter read back as what was given; ``among`` is ``IN``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import db as db_module
from app.bus.models import ArchivedEvent, Delivery, Event
from app.db import Database, among, insert_rows, is_transient
from tests.services import postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture
def database() -> Iterator[Database]:
    with postgres_database(migrated=True) as url:
        database = Database(url)
        yield database
        database.dispose()


def _backend_pid(database: Database) -> int:
    with database.session() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(database: Database, pids: set[int]) -> None:
    """Terminate these server processes from outside the pool (as a server restart would)."""
    killer = Database(database.url)
    try:
        with killer.session() as session:
            for pid in pids:
                session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        killer.dispose()


def test_an_idle_connection_killed_by_the_server_is_replaced_unseen(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_IDLE_SECONDS", 0.2)
    killed = _backend_pid(database)
    _kill(database, {killed})
    time.sleep(0.3)
    assert _backend_pid(database) != killed  # no error: the ping found it dead


def test_a_hot_connection_killed_fails_once_as_transient_then_the_pool_recovers(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_IDLE_SECONDS", 60.0)
    with database.engine.connect() as a, database.engine.connect() as b:  # two in the pool
        pids = {a.execute(text("SELECT pg_backend_pid()")).scalar_one()}
        pids.add(b.execute(text("SELECT pg_backend_pid()")).scalar_one())
    _kill(database, pids)
    outcomes: list[BaseException | int] = []
    for _ in range(3):
        try:
            outcomes.append(_backend_pid(database))
        except Exception as exc:
            outcomes.append(exc)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(is_transient(f) for f in failures), failures
    assert not pids & {o for o in outcomes if isinstance(o, int)}
    assert len(failures) <= 1  # the first disconnect invalidates every pooled connection


def test_rows_inserted_as_one_parameter_read_back_as_given(database: Database) -> None:
    now = datetime(2026, 12, 6, 9, 30, 0, 123456, tzinfo=UTC)
    envelope = {"id": "e1", "detail": {"é": 'ünïcode "quoted" \\ back', "n": [1, 2.5, None]}}
    events = [
        {
            "id": f"e{n}",
            "bus_name": "default",
            "source": "test",
            "detail_type": "x",
            "time": now - timedelta(hours=n),
            "received_at": now,
            "envelope": envelope,
            "replay_name": None,
            "matched_rules": n,
        }
        for n in range(1, 4)
    ]
    with database.session() as session:
        insert_rows(session, Event, events)
        insert_rows(session, ArchivedEvent, [])  # nothing to do, no statement
    with database.session() as session:
        rows = session.query(Event).order_by(Event.id).all()
        assert [(r.id, r.time, r.envelope, r.replay_name, r.matched_rules) for r in rows] == [
            (e["id"], e["time"], envelope, None, e["matched_rules"]) for e in events
        ]
        assert (
            session.scalar(text("SELECT json_typeof(envelope) FROM events WHERE id = 'e1'"))
            == "object"
        )  # stored as JSON, not as a string holding JSON


def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(ValueError, match="naive"), database.session() as session:
        insert_rows(
            session,
            ArchivedEvent,
            [{"archive_name": "a", "event_id": "e", "time": datetime(2026, 1, 1), "size": 1}],
        )


def test_among_is_in_for_any_number_of_values(database: Database) -> None:
    with database.session() as session:
        for values in ([], ["x"], [f"id-{n}" for n in range(500)]):
            statement = Delivery.__table__.select().where(among(session, Delivery.id, values))
            assert session.execute(statement).all() == []
        compiled = str(
            Delivery.__table__.select()
            .where(among(session, Delivery.id, ["a", "b"]))
            .compile(session.get_bind())
        )
        assert "ANY" in compiled
