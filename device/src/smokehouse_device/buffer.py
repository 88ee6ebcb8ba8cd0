"""The disk-backed offline buffer (SQLite in WAL mode).

Every reading is written here first, with its ``seq`` assigned in the same transaction, and is
deleted only once the broker has acknowledged it (PUBACK). So a reading survives a dead network,
a broker restart, a crash and a reboot, and a replay keeps its original ``seq``.

* Bounded by count: past ``max_readings`` the oldest rows are dropped first and a persisted
  ``dropped`` counter goes up.
* ``seq`` is monotonic per device across restarts. Commits use ``synchronous=NORMAL`` (cheap on an
  SD card; durable across a process crash, not necessarily across a power cut). So that a power
  cut can never make a ``seq`` be reused (the server dedupes on ``(device_id, seq)`` and would
  drop the new reading as a duplicate), seqs are reserved in blocks with a fully synced commit;
  after an unclean stop numbering resumes past the reserved block (a gap, never a repeat).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SEQ_BLOCK = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class BufferedReading:
    row_id: int
    seq: int
    payload: str


@dataclass(frozen=True, slots=True)
class BufferStats:
    pending: int
    dropped: int
    next_seq: int


class ReadingBuffer:
    """Thread-safe: the sampling thread appends, the publisher's sender thread fetches/deletes."""

    def __init__(self, path: Path | str, max_readings: int = 100_000) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.path = Path(path)
        self.max_readings = max_readings
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._closed = False
        with self._lock, self._transaction():
            meta = self._read_meta()
            version = meta.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: buffer schema {version}, expected {SCHEMA_VERSION}"
                )
            next_seq = meta.get("next_seq", 1)
            reserved = meta.get("seq_reserved", next_seq)
            max_row_seq = self._conn.execute("SELECT MAX(seq) FROM readings").fetchone()[0]
            if max_row_seq is not None:
                next_seq = max(next_seq, int(max_row_seq) + 1)
            if not meta.get("clean_shutdown", 1):
                # Unclean stop: seqs up to the reserved mark may have gone out on the wire.
                if reserved > next_seq:
                    log.warning(
                        "buffer %s was not closed cleanly: seq resumes at %d (was %d)",
                        self.path,
                        reserved,
                        next_seq,
                    )
                next_seq = max(next_seq, reserved)
            self._next_seq = next_seq
            self._reserved = reserved
            self._dropped = meta.get("dropped", 0)
            self._count: int = int(
                self._conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
            )
            self._write_meta(schema_version=SCHEMA_VERSION, next_seq=next_seq, clean_shutdown=0)

    # -- helpers -----------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def _read_meta(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    def _write_meta(self, **values: int) -> None:
        self._conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def _reserve(self, seq: int) -> None:
        """Make sure ``seq`` is below a durably (fsync'd) recorded reservation."""
        if seq < self._reserved:
            return
        reserved = seq + SEQ_BLOCK
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction():
                self._write_meta(seq_reserved=reserved)
        finally:
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._reserved = reserved

    # -- API ---------------------------------------------------------------------------------

    def append(self, make_payload: Callable[[int], str]) -> BufferedReading:
        """Assign the next ``seq``, store ``make_payload(seq)``; drop the oldest past the bound."""
        with self._lock:
            seq = self._next_seq
            self._reserve(seq)
            payload = make_payload(seq)
            with self._transaction():
                cur = self._conn.execute(
                    "INSERT INTO readings(seq, payload) VALUES (?, ?)", (seq, payload)
                )
                row_id = cur.lastrowid
                assert row_id is not None
                excess = self._count + 1 - self.max_readings
                dropped = 0
                if excess > 0:
                    dropped = self._conn.execute(
                        "DELETE FROM readings WHERE id IN "
                        "(SELECT id FROM readings ORDER BY id LIMIT ?)",
                        (excess,),
                    ).rowcount
                self._write_meta(next_seq=seq + 1, dropped=self._dropped + dropped)
            self._next_seq = seq + 1
            self._count += 1 - dropped
            if dropped:
                self._dropped += dropped
                if self._dropped == dropped or self._dropped % 1000 < dropped:
                    log.warning(
                        "offline buffer full (%d readings): dropped the oldest, %d dropped so far",
                        self.max_readings,
                        self._dropped,
                    )
            return BufferedReading(row_id, seq, payload)

    def fetch_after(self, row_id: int, limit: int) -> list[BufferedReading]:
        """Oldest first, rows with id > ``row_id``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, seq, payload FROM readings WHERE id > ? ORDER BY id LIMIT ?",
                (row_id, limit),
            ).fetchall()
        return [BufferedReading(int(r[0]), int(r[1]), str(r[2])) for r in rows]

    def delete(self, row_ids: Iterable[int]) -> int:
        ids = list(row_ids)
        if not ids:
            return 0
        with self._lock, self._transaction():
            deleted: int = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                deleted += self._conn.execute(
                    f"DELETE FROM readings WHERE id IN ({marks})", chunk
                ).rowcount
            self._count -= deleted
            return deleted

    def stats(self) -> BufferStats:
        with self._lock:
            return BufferStats(pending=self._count, dropped=self._dropped, next_seq=self._next_seq)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                self._write_meta(clean_shutdown=1, next_seq=self._next_seq)
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._closed = True


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
