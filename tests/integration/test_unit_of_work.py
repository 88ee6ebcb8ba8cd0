"""The unit of work: what a session registers runs after its commit, never after a rollback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.bus import outbox
from app.bus.arns import Scope
from app.bus.events import put_events
from app.bus.models import Delivery
from app.bus.service import create_bus, put_rule, put_targets
from app.config import Settings
from app.db import Database, _databases, after_commit, get_database
from app.runners import webhook
from app.workflows import engine


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'uow.db'}")
    with db.session() as session:
        session.execute(text("CREATE TABLE rows (id TEXT PRIMARY KEY)"))
    return db


def test_work_runs_after_commit_and_sees_the_committed_rows(database: Database) -> None:
    seen: list[list[str]] = []

    def send(ids: list[str]) -> None:  # a second connection: only committed rows are visible
        with database.session() as other:
            stored = other.execute(text("SELECT id FROM rows ORDER BY id")).scalars().all()
        seen.append([i for i in ids if i in stored])

    with database.session() as session:
        session.execute(text("INSERT INTO rows VALUES ('a'), ('b')"))
        after_commit(session).batch("deliver", send, ["a"])
        after_commit(session).batch("deliver", send, ["b"])
        assert seen == []  # nothing leaves before the commit
    assert seen == [["a", "b"]]  # one call for the whole batch, after the rows are durable


def test_rollback_drops_registered_work(database: Database) -> None:
    calls: list[str] = []

    def failing_request() -> None:
        with database.session() as session:
            session.execute(text("INSERT INTO rows VALUES ('x')"))
            after_commit(session).call(calls.append, "sent")
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    assert calls == []
    with database.session() as session:
        assert session.execute(text("SELECT count(*) FROM rows")).scalar() == 0


def test_failing_work_is_logged_and_the_rest_still_runs(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken() -> None:
        raise ConnectionError("broker down")

    with database.session() as session:
        after_commit(session).call(broken)
        after_commit(session).call(calls.append, "second")
        after_commit(session).batch("empty", calls.extend, [])
    assert calls == ["second"]  # an empty batch is not sent
    assert "after-commit work" in caplog.text


def test_calls_keep_their_order(database: Database) -> None:
    calls: list[int] = []
    with database.session() as session:
        for n in range(5):
            after_commit(session).call(calls.append, n)
    assert calls == [0, 1, 2, 3, 4]


# --- the enqueue sites registered on it ------------------------------------------------------


@pytest.fixture
def bus(
    settings_factory: Callable[..., Settings], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Database, list[list[str]]]]:
    """A bus whose rule has two targets, and a recorder in place of the Celery hand-off."""
    settings = settings_factory(database_url=database_url)
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        create_bus(session, "uow")
        put_rule(session, name="all", bus_name="uow", event_pattern={"source": ["uow"]})
        targets = [
            {"Id": name, "Arn": f"arn:smokehouse:celery:default:system.{name}"}
            for name in ("one", "two")
        ]
        assert put_targets(session, "uow", "all", targets) == []
    sent: list[list[str]] = []
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda _s, ids: sent.append(list(ids)))
    yield settings, database, sent
    _databases.pop(settings.sqlalchemy_url, None)
    database.dispose()


ENTRY = {"Source": "uow", "DetailType": "d", "Detail": "{}", "EventBusName": "uow"}


def test_the_deliveries_of_one_unit_of_work_go_out_in_one_batch_after_commit(
    bus: tuple[Settings, Database, list[list[str]]],
) -> None:
    settings, database, sent = bus
    scope = Scope(settings.region, settings.account_id)
    with database.session() as session:
        first = put_events(session, [ENTRY], scope, settings=settings)
        second = put_events(session, [ENTRY, ENTRY], scope, settings=settings)
        assert sent == []
    assert len(first.delivery_ids) == 2
    assert len(second.delivery_ids) == 4
    assert sent == [first.delivery_ids + second.delivery_ids]


def test_put_events_in_a_transaction_that_fails_enqueues_nothing(
    bus: tuple[Settings, Database, list[list[str]]],
) -> None:
    settings, database, sent = bus
    scope = Scope(settings.region, settings.account_id)
    ids: list[str] = []

    def failing_request() -> None:
        with database.session() as session:
            ids.extend(put_events(session, [ENTRY], scope, settings=settings).delivery_ids)
            raise RuntimeError("the request failed after PutEvents")

    with pytest.raises(RuntimeError):
        failing_request()
    assert len(ids) == 2  # deliveries were registered...
    assert sent == []  # ...and dropped with the rollback
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_the_engine_runs_a_steps_work_once_on_the_callers_session_and_drops_a_conflicts(
    bus: tuple[Settings, Database, list[list[str]]],
) -> None:
    """The worker's own session (``Database.sessions()``) is not ``Database.session()``: the
    engine's ``_transaction`` sends a step's work after its commit, before the next step."""
    settings, database, _ = bus
    calls: list[str] = []
    with database.sessions() as session:

        def conflicting_step() -> None:
            with engine._transaction(settings, session):
                after_commit(session).call(calls.append, "conflicting step")
                raise RuntimeError("a conflicting step rolls back")

        with pytest.raises(RuntimeError):
            conflicting_step()
        with engine._transaction(settings, session):
            after_commit(session).call(calls.append, "step")
            assert calls == []
        assert calls == ["step"]
        with engine._transaction(settings, session):
            pass
    assert calls == ["step"]  # run once, not again by a later transaction


def test_the_webhook_group_hands_its_enqueue_to_the_caller(
    bus: tuple[Settings, Database, list[list[str]]],
) -> None:
    """The batcher answers its requests before it enqueues: the group's work comes back to it."""
    settings, database, sent = bus
    with database.session() as session:
        put_rule(session, name="hooks", event_pattern={"source": [webhook.SOURCE]})
        target = {"Id": "q", "Arn": "arn:smokehouse:celery:default:system.ping"}
        assert put_targets(session, None, "hooks", [target]) == []
    items = [
        webhook.prepare(
            b'{"object_kind": "push", "after": "%d"}' % n, {"x-gitlab-event": "Push Hook"}
        )
        for n in range(2)
    ]
    outcomes, later = webhook.store_many(settings, items)
    assert len(outcomes) == 2
    assert sent == []
    later.run()
    assert [len(batch) for batch in sent] == [2]
