"""Engine, sessions and the declarative Base.

One ``Database`` per process and URL. SQLite gets WAL, foreign keys and a busy timeout so the API,
the workers and the scheduler can share one file; PostgreSQL gets a pre-pinged pool. Services take a
``Session`` and never commit: the request or task boundary (``Database.session()``) does.

``Database.session()`` is the unit of work. What a service wants done *outside* the database once
its rows are durable -- enqueue a task, publish a live update -- it registers on the session with
:func:`after_commit`; the boundary runs it after a successful commit and drops it on rollback, so
no task ever refers to a row that is not committed (and an outbox sweeper covers a lost send)::

    def put(session: Session, ...) -> None:
        session.add(row)
        after_commit(session).batch(DELIVER, send_deliveries, [row.id])
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed unit of work may succeed if simply tried again: the database (or the
    network to it) is down, busy, locked or restarting, or it chose us as a deadlock or
    serialization victim. Anything else -- bad data, a constraint, a bug -- fails the same way
    every time, and retrying it is a loop: the caller must set that message aside instead."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DisconnectionError | ConnectionError | TimeoutError)


def dialect_insert(bind: Session | Connection) -> Any:
    """The dialect's ``insert`` (PostgreSQL or SQLite), which has ``on_conflict_do_nothing``."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", tune_sqlite)
        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": 5},
    )
    # A many-row INSERT goes as one multi-row statement (compiled once, cached) instead of
    # one pipelined statement per row: PutEvents' events and deliveries, workflow history
    # (interleaved runs: PostgreSQL CPU per put event 0.34-0.36 -> 0.28-0.31 ms, Standard
    # workflows 1,007-1,074 -> 1,129-1,232 transitions/s; bench/RESULTS.md).
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


log = logging.getLogger("smokehouse.db")

_AFTER_COMMIT = "smokehouse.after_commit"


class AfterCommit:
    """Work a unit of work sends out once its transaction has committed.

    ``call`` runs a function once; ``batch`` gathers items under a key and calls its function
    once with all of them (one broker round trip for every delivery a request created). Work
    runs in registration order, each piece on its own: one that raises is logged and the rest
    still run -- a lost send is what the outboxes and sweepers are for, and the request already
    succeeded. Work that must report a failure handles it itself.
    """

    __slots__ = ("_work",)

    def __init__(self) -> None:
        self._work: dict[Hashable, tuple[Callable[..., object], list[Any] | None, tuple[Any, ...]]]
        self._work = {}

    def call(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` after the commit."""
        self._work[object()] = (fn, None, args)

    def batch(self, key: Hashable, fn: Callable[[list[Any]], object], items: Iterable[Any]) -> None:
        """Add ``items`` to the batch ``key``; after the commit ``fn(all_items)`` runs once."""
        entry = self._work.get(key)
        if entry is None:
            entry = self._work[key] = (fn, [], ())
        batch = entry[1]
        assert batch is not None, f"{key!r} is registered as a call, not a batch"
        batch.extend(items)

    def extend(self, other: AfterCommit) -> None:
        """Take over ``other``'s work after this one's (batches under one key merge)."""
        for key, (fn, items, args) in other._work.items():
            if items is None:
                self._work[key] = (fn, None, args)
            else:
                self.batch(key, fn, items)
        other._work = {}

    def __bool__(self) -> bool:
        return bool(self._work)

    def run(self) -> None:
        work, self._work = self._work, {}
        for fn, items, args in work.values():
            if items is not None and not items:
                continue
            try:
                fn(items) if items is not None else fn(*args)
            except Exception:
                log.exception("after-commit work %s failed", getattr(fn, "__qualname__", fn))


def after_commit(session: Session) -> AfterCommit:
    """The work ``session``'s unit of work runs after it commits (created on first use)."""
    work = session.info.get(_AFTER_COMMIT)
    if work is None:
        work = session.info[_AFTER_COMMIT] = AfterCommit()
    return work


def run_after_commit(session: Session) -> None:
    """Run and forget what ``session`` registered: for the few places that commit by hand (the
    workflow engine's inline chaining); ``Database.session()`` calls it for everyone else."""
    work = session.info.pop(_AFTER_COMMIT, None)
    if work:
        work.run()


def detach_after_commit(session: Session) -> AfterCommit:
    """Take ``session``'s registered work out of it, for a caller that sends it later than the
    commit on purpose (the webhook batcher answers its requests first). Call it last inside the
    ``with database.session()`` block and run the result only if the block exits normally: a
    failed commit raises, so the work is never run for rows that do not exist."""
    return session.info.pop(_AFTER_COMMIT, None) or AfterCommit()


def discard_after_commit(session: Session) -> None:
    """Forget registered work: its transaction rolled back, so its rows do not exist."""
    session.info.pop(_AFTER_COMMIT, None)


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """One transaction on ``session``: commit and then run its after-commit work, or roll back
    and drop it. ``Database.session()`` is this on a fresh session; the workflow engine uses it
    on a worker's long-lived one."""
    try:
        with session.begin():
            yield session
    except BaseException:
        discard_after_commit(session)
        raise
    run_after_commit(session)


class Database:
    """An engine plus a session factory; ``session()`` is the unit-of-work boundary."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Commit on success, roll back on error: the only place that commits. Work registered
        with :func:`after_commit` runs after the commit; on rollback it is dropped."""
        with self.sessions() as session, transaction(session):
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}
_lock = threading.Lock()


def get_database(url: str) -> Database:
    """The process-wide Database for a URL (engines are expensive and pool connections)."""
    with _lock:
        database = _databases.get(url)
        if database is None:
            database = _databases[url] = Database(url)
        return database


def _forget_inherited_connections() -> None:
    """In a forked child (Celery's prefork pool), drop the parent's pooled connections without
    closing them — they are the parent's to use — so the child never shares a socket or SQLite
    handle with it (SQLAlchemy's documented pattern for fork)."""
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    for database in _databases.values():
        database.engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)
