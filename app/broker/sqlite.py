"""The embedded broker: kombu's SQLAlchemy transport on SQLite, made at-least-once.

Stock ``sqla+sqlite`` marks a message invisible when a worker takes it and never deletes or
restores it: a worker killed with ``-9`` loses the message, and the table grows forever. Here a
taken message is *leased*: ack deletes the row, reject/restore makes it visible again, and a lease
older than ``visibility_timeout`` (a worker that died) is taken again — the same contract as Redis'
``unacked`` hash. Registered as the ``smokehouse+sqlite://`` broker URL scheme when imported
(:mod:`app.broker.celery` and the readiness probe import it).

Threads: a Celery worker on this transport runs its synchronous loop with a *threaded* prefork
pool, so the main thread polls (``_get``) while the pool's result-handler thread acks
(``basic_ack`` → ``DELETE``). A SQLAlchemy ``Session`` is not thread-safe — sharing the stock
transport's one session made the poller find it mid-commit (``InvalidRequestError: This session
is in 'prepared' state``) and the worker stop for good — so each thread gets its own session
here, and a failed statement rolls its session back instead of leaving it unusable.

Locking: an empty poll only reads (WAL readers never wait); the write lock
(``BEGIN IMMEDIATE``) is taken only when there is a message to lease.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as sqla
from kombu.transport.sqlalchemy import models
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, delete, event, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.db import tune_sqlite

DEFAULT_VISIBILITY_TIMEOUT = 3600.0
#: Seconds a statement waits for another connection's write lock (sqlite3's ``timeout``).
DEFAULT_BUSY_TIMEOUT = 30.0


def _create_tables(engine: Any, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            models.metadata.create_all(engine)  # checks first, then creates what is missing
            return
        except OperationalError as exc:  # another process created one in between
            if "already exists" not in str(exc) or attempt == attempts - 1:
                raise


def _utcnow() -> datetime:
    # kombu's column is a naive DateTime; keep it naive UTC.
    return datetime.utcnow()


class Channel(sqla.Channel):
    """Leases instead of hiding: ack deletes, restore un-hides, stale leases are retaken."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        self._local = threading.local()
        self._sessions: list[Session] = []
        self._sessions_lock = threading.Lock()
        self._leases: dict[str, int] = {}
        self._leases_lock = threading.Lock()
        super().__init__(connection, **kwargs)
        options = connection.client.transport_options
        self.visibility_timeout = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        )

    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key in ("connect_args", "pool_size", "echo")
        }
        options.setdefault("connect_args", {"timeout": DEFAULT_BUSY_TIMEOUT})
        busy_ms = int(1000 * float(options["connect_args"].get("timeout", DEFAULT_BUSY_TIMEOUT)))
        engine = create_engine(conninfo.hostname, **options)

        def tune(dbapi_connection: Any, record: Any) -> None:
            tune_sqlite(dbapi_connection, record)
            # tune_sqlite sets the app database's busy timeout; keep the broker's own.
            dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")

        event.listen(engine, "connect", tune)
        return engine

    def _open(self) -> Any:
        """The stock ``_open`` with a table creation that tolerates a race: two processes that
        first use the broker file at the same moment (ingest and a starting worker) both find
        no tables, and the slower ``CREATE TABLE`` failed with "already exists" -- its enqueue
        was lost to the sweeper. Checking again after that error sees the winner's tables."""
        conninfo = self.connection.client
        if conninfo.hostname not in self._engines:
            with sqla._MUTEX:
                if conninfo.hostname not in self._engines:
                    engine = self._engine_from_config()
                    _create_tables(engine)
                    self._engines[conninfo.hostname] = engine, sessionmaker(bind=engine)
        return self._engines[conninfo.hostname]

    def _get_or_create(self, queue: str) -> Any:
        """The queue's row, made if missing. Another process may insert the same name between
        our look and our insert (UNIQUE fails): then the row is theirs, and we read it."""
        session = self.session
        found = session.query(self.queue_cls).filter(self.queue_cls.name == queue).first()
        if found is not None:
            return found
        session.add(self.queue_cls(queue))
        try:
            session.commit()
        except (IntegrityError, OperationalError):
            session.rollback()
        return session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()

    @property
    def session(self) -> Session:
        """This thread's session (the stock transport shares one between all threads)."""
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            _, factory = self._open()
            session = self._local.session = factory()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        try:
            super().close()  # restores unacked messages, through the sessions
        finally:
            with self._sessions_lock:
                sessions, self._sessions = self._sessions, []
            self._local = threading.local()
            for session in sessions:
                session.close()

    def _get(self, queue: str, timeout: Any = None) -> Any:
        obj = self._get_or_create(queue)
        model = self.message_cls
        session = self.session

        def takeable(now: datetime) -> Any:
            stale = now - timedelta(seconds=self.visibility_timeout)
            return (
                select(model.id, model.payload, model.visible)
                .where(model.queue_id == obj.id)
                .where(or_(model.visible.is_(True), model.sent_at < stale))
                .order_by(model.id)
                .limit(1)
            )

        try:
            # A read first: an empty queue (most polls) never takes the write lock.
            found = session.execute(takeable(_utcnow())).first()
            session.commit()
            if found is None:
                raise Empty()
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
            now = _utcnow()
            row = session.execute(takeable(now)).first()  # again, under the lock
            if row is None:  # another consumer leased it meanwhile
                session.commit()
                raise Empty()
            session.execute(
                update(model).where(model.id == row.id).values(visible=False, sent_at=now)
            )
            session.commit()
        except Empty:
            raise
        except BaseException:
            session.rollback()
            raise
        payload: dict[str, Any] = json.loads(bytes_to_str(row.payload))
        if not row.visible:
            payload["redelivered"] = True
        with self._leases_lock:
            self._leases[payload["properties"]["delivery_tag"]] = row.id
        return payload

    def _finish(self, delivery_tag: str, *, requeue: bool) -> bool:
        with self._leases_lock:
            row_id = self._leases.pop(delivery_tag, None)
        if row_id is None:
            return False
        model = self.message_cls
        if requeue:
            statement: Any = update(model).where(model.id == row_id).values(visible=True)
        else:
            statement = delete(model).where(model.id == row_id)
        session = self.session
        try:
            session.execute(statement)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return True

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        self._finish(delivery_tag, requeue=False)
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._finish(delivery_tag, requeue=requeue)
        self.qos.reject(delivery_tag, requeue=False)

    def _restore(self, message: Any) -> None:
        if not self._finish(message.delivery_tag, requeue=True):
            super()._restore(message)

    def _size(self, queue: str) -> int:
        obj = self._get_or_create(queue)
        model = self.message_cls
        stale = _utcnow() - timedelta(seconds=self.visibility_timeout)
        session = self.session
        try:
            count = session.execute(
                select(func.count())
                .select_from(model)
                .where(model.queue_id == obj.id)
                .where(or_(model.visible.is_(True), model.sent_at < stale))
            ).scalar_one()
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return int(count)


class Transport(sqla.Transport):
    Channel = Channel
    driver_type = "sql"
    driver_name = "sqlite"


def _forget_inherited_connections() -> None:
    """A forked child (a prefork pool process) must not use its parent's SQLite connections:
    drop them from the inherited pools unclosed (``dispose(close=False)``, as SQLAlchemy
    documents for ``fork``); the child opens its own."""
    for engine, _ in list(sqla.Channel._engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)
TRANSPORT_ALIASES.setdefault("smokehouse", f"{__name__}:Transport")
