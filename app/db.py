"""Engine, sessions and the declarative Base.

One ``Database`` per process and URL. SQLite gets WAL, foreign keys and a busy timeout so the API,
the workers and the scheduler can share one file; PostgreSQL gets a pool that pings connections
idle for a second (:func:`ping_when_idle`). Services take a ``Session`` and never commit: the
request or task boundary (``Database.session()``) does.

``Database.session()`` is the unit of work. What a service wants done *outside* the database once
its rows are durable -- enqueue a task, publish a live update -- it registers on the session with
:func:`after_commit`; the boundary runs it after a successful commit and drops it on rollback, so
no task ever refers to a row that is not committed (and an outbox sweeper covers a lost send)::

    def put(session: Session, ...) -> None:
        session.add(row)
        after_commit(session).batch(DELIVER, send_deliveries, [row.id])
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Insert,
    MetaData,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    literal_column,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
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


def is_postgresql(bind: Session | Connection) -> bool:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


def dialect_insert(bind: Session | Connection) -> Any:
    """The dialect's ``insert`` (PostgreSQL or SQLite), which has ``on_conflict_do_nothing``."""
    return postgresql.insert if is_postgresql(bind) else sqlite.insert


def insert_rows(
    bind: Session | Connection, table: Table | type[Base], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows`` (all with the same keys) into ``table`` (or a model's): see
    :func:`insert_together`."""
    insert_together(bind, [(table, rows)])


def insert_together(
    bind: Session | Connection,
    tables: Sequence[tuple[Table | type[Base], Sequence[dict[str, Any]]]],
) -> None:
    """Insert each table's rows (all of one table with the same keys), in one statement whose
    text does not depend on how many rows there are.

    On PostgreSQL each table's rows go as one JSON parameter that the server turns back into
    rows (``json_populate_recordset``), and every table but the last is a data-modifying CTE of
    the last one's INSERT: one round trip for an event and its deliveries (foreign keys are
    checked at the end of the statement, when all rows exist). One ``json.dumps`` in C on this
    side, one short statement that the driver converts once and the server prepares once. A
    multi-row ``VALUES`` has a placeholder per value -- past psycopg's cache limits (50
    parameters, 4 KB) it was parsed by a regular expression at every call, 0.8 ms for ten
    deliveries -- and a new statement text per row count. Elsewhere, an executemany per table,
    in order. Values are what the columns' types take on both backends: str, int, None, dicts
    and lists for JSON, aware datetimes; a column left out gets its default, on PostgreSQL
    evaluated once for the statement (``utcnow``: one time for all rows)."""
    given = [(table_of(table), rows) for table, rows in tables if rows]
    if not given:
        return
    if not is_postgresql(bind):
        for table, rows in given:
            bind.execute(insert(table), list(rows))
        return
    shape = tuple((table, tuple(rows[0])) for table, rows in given)
    params = {f"rows_{n}": rows_json(rows) for n, (_table, rows) in enumerate(given)}
    bind.execute(_together(shape), params)


@cache
def _together(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    *first, (table, keys) = shape
    statement = recordset_insert(table, keys, f"rows_{len(first)}")
    for n, (other, other_keys) in enumerate(first):
        statement = statement.add_cte(
            recordset_insert(other, other_keys, f"rows_{n}").cte(f"insert_{n}")
        )
    return statement


def table_of(model: Table | type[Base]) -> Table:
    """A model's table (a table is its own)."""
    table = model if isinstance(model, Table) else model.__table__
    assert isinstance(table, Table)
    return table


def rows_json(rows: Sequence[dict[str, Any]]) -> str:
    """The ``:rows`` parameter of :func:`recordset_insert`."""
    return json.dumps(rows, default=_iso_utc, separators=(",", ":"))


def _iso_utc(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


@cache
def recordset_insert(table: Table, keys: tuple[str, ...], param: str = "rows") -> Insert:
    """``INSERT INTO table (keys) SELECT keys FROM json_populate_recordset(…, :rows)`` on
    PostgreSQL: the rows arrive as one JSON array (:func:`rows_json`); a statement may add a
    data-modifying CTE to it (``add_cte``) to do more in the same round trip."""
    row_type: ColumnElement[Any] = literal_column(f'NULL::"{table.name}"')  # names: no escaping
    records = func.json_populate_recordset(
        row_type,
        cast(bindparam(param, type_=Text()), postgresql.JSON),
    ).table_valued(*keys, name="records")
    return insert(table).from_select(list(keys), select(*(records.c[key] for key in keys)))


def among(bind: Session | Connection, column: Any, values: Iterable[Any]) -> Any:
    """``column IN values`` as one parameter on PostgreSQL (``= ANY(array)``): the statement's
    text is the same for any number of values, so the driver and server keep it converted and
    prepared (an expanded ``IN`` has a placeholder per value and a text per count)."""
    values = list(values)
    if not is_postgresql(bind):
        return column.in_(values)
    return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))


def tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


#: A pooled connection idle longer than this is pinged before it is used again.
PING_IDLE_SECONDS = 1.0


def ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle for ``PING_IDLE_SECONDS``.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip per unit of work, 28 %
    of a workflow worker's time in a profile. A connection used a moment ago is trusted; if the
    server went away since, its first statement fails as a disconnect, SQLAlchemy drops every
    pooled connection, and that one unit of work fails as transient (its message is sent again
    by the outbox sweeper; an API call answers 500, which AWS SDKs retry). A connection idle
    longer -- everything after an outage of more than a second -- is pinged, and replaced if
    dead, without anyone seeing an error."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection is dead: {exc}") from exc


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
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": 5},
    )
    ping_when_idle(engine)
    # An executemany that does not go through insert_rows (SQS messages, an ORM flush of many
    # new objects) goes as one multi-row statement instead of one pipelined statement per row
    # (interleaved runs when PutEvents still used it: PostgreSQL CPU per put event 0.34-0.36
    # -> 0.28-0.31 ms; bench/RESULTS.md).
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

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which every statement commits by itself: for one statement that is
        atomic on its own (a claim, a record), one round trip where a transaction takes three
        (``BEGIN``, the statement, ``COMMIT``)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

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
