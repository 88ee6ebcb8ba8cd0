"""The readings table: batched, idempotent inserts and the retention purge.

``store`` is one multi-row ``INSERT … ON CONFLICT DO NOTHING`` (SQLAlchemy's insertmanyvalues:
hundreds of rows per statement), so a redelivered batch inserts nothing twice. The rows it did
insert (``RETURNING``) are added to ``iot_readings_rollup`` (per-probe 10 s sums) in the same
transaction: a redelivery adds nothing, a late reading lands in its own bucket, concurrent
writers add up (``ON CONFLICT DO UPDATE`` locks the bucket row). ``purge`` deletes in bounded
batches so a year of backlog never becomes one huge transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from app.iot.models import IngestDeadLetter, IngestedMessage, Reading, ReadingRollup

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

#: The rollup's bucket width; buckets start at whole multiples of it since 1970-01-01 UTC.
ROLLUP_WIDTH = timedelta(seconds=10)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROLLUP_COLUMNS = "device_id, probe_id, bucket_start, n, sum_c, min_c, max_c, first_ts"
_PG_BUCKET = "date_bin('10 seconds', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
_PG_AGGREGATE = (
    f"SELECT device_id, probe_id, {_PG_BUCKET} AS bucket_start, count(temp_c), "
    "coalesce(sum(temp_c), 0.0), min(temp_c), max(temp_c), min(ts) FROM {source} "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"  # one lock order for concurrent writers
)
_PG_MERGE = (
    "ON CONFLICT (device_id, probe_id, bucket_start) DO UPDATE SET n = r.n + excluded.n, "
    "sum_c = r.sum_c + excluded.sum_c, min_c = least(r.min_c, excluded.min_c), "
    "max_c = greatest(r.max_c, excluded.max_c), first_ts = least(r.first_ts, excluded.first_ts)"
)
#: The rollup rebuilt from all readings (bench loads and imports that bypass ``store``; the
#: migration has its own copy). Run on an empty rollup.
ROLLUP_BACKFILL = {
    "postgresql": f"INSERT INTO iot_readings_rollup ({_ROLLUP_COLUMNS}) "
    + _PG_AGGREGATE.format(source="iot_readings"),
    "sqlite": f"INSERT INTO iot_readings_rollup ({_ROLLUP_COLUMNS}) SELECT device_id, probe_id, "
    "strftime('%Y-%m-%d %H:%M:%S.000000', CAST(strftime('%s', ts) AS INTEGER) / 10 * 10, "
    "'unixepoch') AS b, count(temp_c), coalesce(sum(temp_c), 0.0), min(temp_c), max(temp_c), "
    "min(ts) FROM iot_readings GROUP BY device_id, probe_id, b",
}


def rollup_bucket(ts: datetime) -> datetime:
    """The start of the rollup bucket holding ``ts``."""
    return EPOCH + (ts - EPOCH) // ROLLUP_WIDTH * ROLLUP_WIDTH


def rebuild_rollup(session: Session) -> None:
    """Recompute the whole rollup from the readings table."""
    session.execute(delete(ReadingRollup))
    session.execute(text(ROLLUP_BACKFILL[session.get_bind().dialect.name]))


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
    statement = (
        sqlite.insert(Reading)
        .on_conflict_do_nothing(index_elements=["device_id", "seq", "probe_id"])
        .returning(Reading.device_id, Reading.probe_id, Reading.ts, Reading.temp_c)
    )
    inserted = session.connection().execute(statement, list(rows)).all()
    _add_to_rollup_sqlite(session, inserted)


def _add_to_rollup_sqlite(session: Session, inserted: Iterable[Any]) -> None:
    sums: dict[tuple[str, str, datetime], dict[str, Any]] = {}
    for device_id, probe_id, ts, temp_c in inserted:
        key = (device_id, probe_id, rollup_bucket(ts))
        one = sums.get(key)
        if one is None:
            one = sums[key] = {
                "device_id": device_id,
                "probe_id": probe_id,
                "bucket_start": key[2],
                "n": 0,
                "sum_c": 0.0,
                "min_c": None,
                "max_c": None,
                "first_ts": ts,
            }
        one["first_ts"] = min(one["first_ts"], ts)
        if temp_c is not None:
            one["n"] += 1
            one["sum_c"] += temp_c
            one["min_c"] = temp_c if one["min_c"] is None else min(one["min_c"], temp_c)
            one["max_c"] = temp_c if one["max_c"] is None else max(one["max_c"], temp_c)
    if not sums:
        return
    table = ReadingRollup.__table__
    upsert = sqlite.insert(ReadingRollup)
    new = upsert.excluded
    # SQLite's two-argument min/max are NULL when either is: coalesce keeps the known one
    upsert = upsert.on_conflict_do_update(
        index_elements=["device_id", "probe_id", "bucket_start"],
        set_={
            "n": table.c.n + new.n,
            "sum_c": table.c.sum_c + new.sum_c,
            "min_c": func.coalesce(func.min(table.c.min_c, new.min_c), table.c.min_c, new.min_c),
            "max_c": func.coalesce(func.max(table.c.max_c, new.max_c), table.c.max_c, new.max_c),
            "first_ts": func.min(table.c.first_ts, new.first_ts),
        },
    )
    session.connection().execute(upsert, [sums[key] for key in sorted(sums)])


def _copy_postgres(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(_STAGING)
        with cursor.copy(f"COPY iot_readings_in ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[column] for column in COLUMNS))
        cursor.execute(
            f"WITH inserted AS (INSERT INTO iot_readings ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} "
            "FROM iot_readings_in ON CONFLICT (device_id, seq, probe_id) DO NOTHING "
            "RETURNING device_id, probe_id, ts, temp_c) "
            f"INSERT INTO iot_readings_rollup AS r ({_ROLLUP_COLUMNS}) "
            + _PG_AGGREGATE.format(source="inserted")
            + " "
            + _PG_MERGE
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
    """One bounded round of deletes: readings older than the retention (none when it is 0) and
    their rollup buckets (those wholly before the cutoff), dedupe keys older than a week, dead
    letters older than 30 days."""
    removed = {
        "readings": 0,
        "rollup": 0,
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
        removed["rollup"] = _purge(
            session, ReadingRollup, ReadingRollup.bucket_start, rollup_bucket(cutoff), batch
        )
    return removed
