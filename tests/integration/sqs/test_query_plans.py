"""The receive and the delete stay index lookups on a deep queue whose statistics are stale.

A burst into a fresh queue is the case: PostgreSQL has no statistics yet, and psycopg prepares a
statement on its fifth run, after which PostgreSQL may use a generic plan (parameters unknown).
Both once made a receive scan and sort the whole queue (5.8 ms instead of 0.2 ms at 20,000
messages, throughput falling with depth). Each statement is planned here as a generic plan
(``plan_cache_mode = force_generic_plan``) with the parameters a real call sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import ClientCursor
from sqlalchemy import event

from app.db import Database
from app.queues.sqs import messages as sqs_messages
from app.queues.sqs import queues as sqs_queues
from tests.services import postgres_database

WHERE = sqs_queues.Where("http://localhost", "000000000000", "us-east-1")


@pytest.fixture
def deep_queue() -> Iterator[Database]:
    with postgres_database(migrated=True) as url:
        database = Database(url)
        with database.session() as session:
            sqs_queues.create(session, "deep", {}, {}, WHERE)
        with database.session() as session:
            queue = sqs_queues.snapshot(session, "deep")
            sqs_messages.send(
                session, queue, [sqs_messages.Outgoing(body=f"m{i}") for i in range(3000)]
            )
        try:
            yield database
        finally:
            database.dispose()


def _statements(database: Database, call: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.session() as session:
            call(session)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    return seen


def _generic_plan(database: Database, statement: str, params: dict[str, Any]) -> str:
    """The plan PostgreSQL keeps for the statement once it goes generic: ``PREPARE`` it with
    ``$n`` parameters, then ``EXPLAIN EXECUTE`` it with the real values (as literals)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    prepared = re.sub(r"%\((\w+)\)s", number, statement)
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE planned AS {prepared}")
        values = ClientCursor(raw.driver_connection).mogrify(
            ", ".join(["%s"] * len(names)), [params[name] for name in names]
        )
        cursor.execute(f"EXPLAIN EXECUTE planned({values})")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        raw.rollback()
        return plan
    finally:
        raw.close()


def test_a_receive_is_an_ordered_index_scan_whatever_the_statistics(deep_queue: Database) -> None:
    statements = _statements(
        deep_queue,
        lambda s: sqs_messages.receive(s, sqs_queues.snapshot(s, "deep"), 10, 30),
    )
    (claim,) = [(sql, p) for sql, p in statements if "FOR UPDATE SKIP LOCKED" in sql]
    plan = _generic_plan(deep_queue, *claim)
    assert "Index Scan using ix_queue_messages_pull_visible_at" in plan, plan
    assert "Sort" not in plan, plan


def test_a_delete_finds_its_rows_by_primary_key_alone(deep_queue: Database) -> None:
    with deep_queue.session() as session:
        got = sqs_messages.receive(session, sqs_queues.snapshot(session, "deep"), 10, 30)
    handles = [sqs_messages.parse_handle(m.handle) for m in got]
    statements = _statements(deep_queue, lambda s: sqs_messages.delete_many(s, "deep", handles))
    (delete,) = [(sql, p) for sql, p in statements if sql.lstrip().startswith("WITH")]
    plan = _generic_plan(deep_queue, *delete)
    indexes = re.findall(r"Index Scan (?:using|on) (\w+)", plan)
    assert set(indexes) == {"pk_queue_messages"}, plan
    assert "Seq Scan" not in plan, plan
    # and it deleted them
    with deep_queue.session() as session:
        assert sqs_queues.counts(session, "deep") == (2990, 0, 0)
