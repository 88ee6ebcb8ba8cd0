"""The embedded broker: kombu's SQLAlchemy transport on SQLite, made at-least-once.

Stock ``sqla+sqlite`` marks a message invisible when a worker takes it and never deletes or
restores it: a worker killed with ``-9`` loses the message, and the table grows forever. Here a
taken message is *leased*: ack deletes the row, reject/restore makes it visible again, and a lease
older than ``visibility_timeout`` (a worker that died) is taken again — the same contract as Redis'
``unacked`` hash. Registered as the ``smokehouse+sqlite://`` broker URL scheme.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, delete, event, func, or_, select, text, update

from app.db import tune_sqlite

DEFAULT_VISIBILITY_TIMEOUT = 3600.0


def _utcnow() -> datetime:
    # kombu's column is a naive DateTime; keep it naive UTC.
    return datetime.utcnow()


class Channel(sqla.Channel):
    """Leases instead of hiding: ack deletes, restore un-hides, stale leases are retaken."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        options = connection.client.transport_options
        self.visibility_timeout = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        )
        self._leases: dict[str, int] = {}

    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key in ("connect_args", "pool_size", "echo")
        }
        options.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(conninfo.hostname, **options)
        event.listen(engine, "connect", tune_sqlite)
        return engine

    def _get(self, queue: str, timeout: Any = None) -> Any:
        obj = self._get_or_create(queue)
        model = self.message_cls
        session = self.session
        session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            now = _utcnow()
            stale = now - timedelta(seconds=self.visibility_timeout)
            row = session.execute(
                select(model.id, model.payload, model.visible)
                .where(model.queue_id == obj.id)
                .where(or_(model.visible.is_(True), model.sent_at < stale))
                .order_by(model.id)
                .limit(1)
            ).first()
            if row is None:
                raise Empty()
            session.execute(
                update(model).where(model.id == row.id).values(visible=False, sent_at=now)
            )
            payload: dict[str, Any] = json.loads(bytes_to_str(row.payload))
            if not row.visible:
                payload["redelivered"] = True
            self._leases[payload["properties"]["delivery_tag"]] = row.id
            return payload
        finally:
            session.commit()

    def _finish(self, delivery_tag: str, *, requeue: bool) -> bool:
        row_id = self._leases.pop(delivery_tag, None)
        if row_id is None:
            return False
        model = self.message_cls
        if requeue:
            statement: Any = update(model).where(model.id == row_id).values(visible=True)
        else:
            statement = delete(model).where(model.id == row_id)
        self.session.execute(statement)
        self.session.commit()
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
        count = self.session.execute(
            select(func.count())
            .select_from(model)
            .where(model.queue_id == obj.id)
            .where(or_(model.visible.is_(True), model.sent_at < stale))
        ).scalar_one()
        self.session.commit()
        return int(count)


class Transport(sqla.Transport):
    Channel = Channel
    driver_type = "sql"
    driver_name = "sqlite"


TRANSPORT_ALIASES.setdefault("smokehouse", f"{__name__}:Transport")
