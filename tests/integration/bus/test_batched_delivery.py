"""Deliveries travel and are attempted in batches (issue 14): one claim statement, one record
transaction, one task message for many deliveries -- with the guarantees of one-at-a-time
delivery intact: each delivery attempted once per claim, a failure in a batch retried alone,
a delivery another worker holds never attempted twice at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select, text, update

from app.bus import service as bus
from app.bus.arns import Scope
from app.bus.delivery import deliver_batch
from app.bus.events import put_events
from app.bus.models import Delivery, DeliveryAttempt
from app.config import Settings
from app.db import get_database, utcnow
from app.handlers import HandlerContext, handler
from workers.tasks import bus as bus_tasks

pytestmark = pytest.mark.integration

CALLS: list[Any] = []


@handler("batch-probe")
def probe(payload: Any, context: HandlerContext) -> Any:
    CALLS.append(payload["detail"]["n"])
    if payload["detail"].get("fail"):
        raise RuntimeError("this one fails")
    return None


def put(settings: Settings, details: list[dict[str, Any]]) -> list[str]:
    """Put one event per detail, in PutEvents calls of ten; the delivery ids, in order."""
    database = get_database(settings.sqlalchemy_url)
    ids: list[str] = []
    for start in range(0, len(details), 10):
        with database.session() as session:
            result = put_events(
                session,
                [
                    {"Source": "test.batch", "DetailType": "Item", "Detail": json.dumps(d)}
                    for d in details[start : start + 10]
                ],
                Scope(settings.region, settings.account_id),
            )
        ids += result.delivery_ids
    return ids


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    settings = settings_factory(database_url=database_url)
    with get_database(settings.sqlalchemy_url).session() as session:
        bus.put_rule(session, name="batch", event_pattern={"source": ["test.batch"]})
        target = {"Id": "h", "Arn": "arn:smokehouse:handler:batch-probe"}
        assert bus.put_targets(session, None, "batch", [target]) == []
    CALLS.clear()
    return settings


def statuses(settings: Settings) -> dict[str, int]:
    with get_database(settings.sqlalchemy_url).session() as session:
        return dict(
            session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()  # type: ignore[arg-type]
        )


def test_a_batch_is_attempted_once_each_and_recorded_with_its_attempts(
    settings: Settings,
) -> None:
    ids = put(settings, [{"n": n} for n in range(10)])
    outcomes = deliver_batch(settings, ids)
    assert outcomes == dict.fromkeys(ids, "succeeded")
    assert sorted(CALLS) == list(range(10))
    assert statuses(settings) == {"succeeded": 10}
    with get_database(settings.sqlalchemy_url).session() as session:
        numbers = session.scalars(select(DeliveryAttempt.number)).all()
    assert sorted(numbers) == [1] * 10
    # The same message again (a redelivery): nothing is due, nothing runs twice.
    assert deliver_batch(settings, ids) == {}
    assert len(CALLS) == 10


def test_a_failure_in_a_batch_is_retried_alone(settings: Settings) -> None:
    ids = put(settings, [{"n": n, "fail": n == 3} for n in range(5)])
    outcomes = deliver_batch(settings, ids)
    assert sorted(outcomes.values()) == [
        "retry",
        "succeeded",
        "succeeded",
        "succeeded",
        "succeeded",
    ]
    assert statuses(settings) == {"pending": 1, "succeeded": 4}
    with get_database(settings.sqlalchemy_url).session() as session:
        [failed] = session.scalars(select(Delivery).where(Delivery.status == "pending")).all()
        assert failed.last_error is not None
        assert "this one fails" in failed.last_error
        assert failed.claimed_until is None
        assert failed.next_attempt_at > utcnow()


def test_a_delivery_another_worker_holds_is_left_to_it(settings: Settings) -> None:
    ids = put(settings, [{"n": n} for n in range(3)])
    with get_database(settings.sqlalchemy_url).session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == ids[1])
            .values(claimed_until=utcnow().replace(year=2999), attempts=1)
        )
    assert set(deliver_batch(settings, ids)) == {ids[0], ids[2]}
    assert sorted(CALLS) == [0, 2]


def test_a_partial_batch_takes_other_due_deliveries_to_the_same_target(
    settings: Settings,
) -> None:
    ids = put(settings, [{"n": n} for n in range(30)])
    outcomes = deliver_batch(settings, ids[:10])
    if settings.sqlalchemy_url.startswith("postgresql"):
        # The other twenty were due for the same target: one claim took them all.
        assert set(outcomes) == set(ids)
        assert deliver_batch(settings, ids[10:]) == {}  # their own message finds them done
    else:  # SQLite (one writer, embedded): the listed ones only
        assert set(outcomes) == set(ids[:10])
        assert set(deliver_batch(settings, ids[10:])) == set(ids[10:])
    assert sorted(CALLS) == list(range(30))
    assert statuses(settings) == {"succeeded": 30}


def test_a_message_from_before_batches_still_delivers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task message sent by the previous release (one id, not a list) after an upgrade."""
    [delivery_id] = put(settings, [{"n": 7}])
    monkeypatch.setattr(bus_tasks, "settings_of", lambda _app: settings)
    assert bus_tasks.deliver.run(delivery_id) == {delivery_id: "succeeded"}
    assert CALLS == [7]


def test_a_claim_under_a_backlog_reads_its_own_rows_by_primary_key(settings: Settings) -> None:
    """A consumer catching up after an outage: thousands pending, statistics from when the
    table was empty. The claim must find its fifty by their ids, not by walking the due index
    over every pending row (20 ms a claim at 7,000 queued; it was the plan PostgreSQL chose)."""
    if not settings.sqlalchemy_url.startswith("postgresql"):
        pytest.skip("the plan is PostgreSQL's (SQLite claims by the ids it is given)")
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:  # statistics of an empty table, as after a deploy
        session.execute(text("ANALYZE deliveries"))
    ids = put(settings, [{"n": n} for n in range(1500)])
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "UPDATE deliveries SET" in statement and not plans:
            cursor.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))

    event.listen(database.engine, "before_cursor_execute", explain)
    try:
        outcomes = deliver_batch(settings, ids[700:750])
    finally:
        event.remove(database.engine, "before_cursor_execute", explain)
    assert set(outcomes) == set(ids[700:750])
    # The claim is one statement; its first part finds the listed rows (the part that takes
    # other due deliveries to the same targets walks the due index, as it should).
    listed = plans[0].split("CTE listed")[1].split("CTE same_targets")[0]
    assert "ix_deliveries_due" not in listed, plans[0]
    assert "pk_deliveries" in plans[0], plans[0]
