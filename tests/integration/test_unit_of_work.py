"""The unit of work: what a session registers runs after its commit, never after a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import Database, after_commit


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
