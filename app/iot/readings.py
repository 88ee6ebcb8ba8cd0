"""The readings table: batched, idempotent inserts and the retention purge.

``store`` is one multi-row ``INSERT … ON CONFLICT DO NOTHING`` (SQLAlchemy's insertmanyvalues:
hundreds of rows per statement), so a redelivered batch inserts nothing twice. ``purge`` deletes
in bounded batches so a year of backlog never becomes one huge transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from app.iot.models import IngestDeadLetter, IngestedMessage, Reading

#: (device, seq) dedupe only needs to outlive a broker's redelivery and a device's replay.
DEDUPE_KEEP = timedelta(days=7)
DEAD_LETTERS_KEEP = timedelta(days=30)


COLUMNS = (
    "device_id",
    "probe_id",
    "seq",
    "ts",
    "received_at",
    "cook_id",
    "temp_c",
    "raw_temp_c",
    "status",
    "rate_c_per_min",
)
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS iot_readings_in (device_id varchar(64), "
    "probe_id varchar(64), seq bigint, ts timestamptz, received_at timestamptz, cook_id integer, "
    "temp_c double precision, raw_temp_c double precision, status varchar(16), "
    "rate_c_per_min double precision) ON COMMIT DELETE ROWS"
)
_COLUMN_LIST = ", ".join(COLUMNS)


def store(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert readings; rows already stored (same device, seq, probe) are skipped.

    PostgreSQL: COPY into a session-local staging table, then one ``INSERT … SELECT … ON
    CONFLICT DO NOTHING`` (COPY is several times faster than a pipelined executemany). SQLite: a
    Core executemany of ``INSERT … ON CONFLICT DO NOTHING``."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _copy_postgres(session, rows)
        return
    statement = sqlite.insert(Reading).on_conflict_do_nothing(
        index_elements=["device_id", "seq", "probe_id"]
    )
    session.connection().execute(statement, list(rows))


def _copy_postgres(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(_STAGING)
        with cursor.copy(f"COPY iot_readings_in ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[column] for column in COLUMNS))
        cursor.execute(
            f"INSERT INTO iot_readings ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM "
            "iot_readings_in ON CONFLICT (device_id, seq, probe_id) DO NOTHING"
        )


def _purge(session: Session, model: Any, column: Any, cutoff: datetime, batch: int) -> int:
    key = model.__table__.primary_key.columns.values()
    ids = select(*key).where(column < cutoff).limit(batch)
    if len(key) == 1:
        result = session.execute(delete(model).where(key[0].in_(ids.scalar_subquery())))
    else:
        rows = session.execute(ids).all()
        if not rows:
            return 0
        result = session.execute(delete(model).where(tuple_(*key).in_([tuple(r) for r in rows])))
    return int(getattr(result, "rowcount", 0) or 0)


def purge_batch(session: Session, now: datetime, retention_days: int, batch: int) -> dict[str, int]:
    """One bounded round of deletes: readings older than the retention (none when it is 0),
    dedupe keys older than a week, dead letters older than 30 days."""
    removed = {
        "readings": 0,
        "ingested_messages": _purge(
            session, IngestedMessage, IngestedMessage.received_at, now - DEDUPE_KEEP, batch
        ),
        "dead_letters": _purge(
            session, IngestDeadLetter, IngestDeadLetter.received_at, now - DEAD_LETTERS_KEEP, batch
        ),
    }
    if retention_days > 0:
        cutoff = now - timedelta(days=retention_days)
        removed["readings"] = _purge(session, Reading, Reading.ts, cutoff, batch)
    return removed
