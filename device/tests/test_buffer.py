from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from smokehouse_device.buffer import SEQ_BLOCK, ReadingBuffer


def payload(seq: int) -> str:
    return json.dumps({"seq": seq})


def test_append_assigns_monotonic_seq(tmp_path: Path) -> None:
    buf = ReadingBuffer(tmp_path / "b.sqlite3")
    rows = [buf.append(payload) for _ in range(5)]
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert [json.loads(r.payload)["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert len(buf) == 5
    buf.close()


def test_wal_mode_on_disk(tmp_path: Path) -> None:
    buf = ReadingBuffer(tmp_path / "b.sqlite3")
    buf.append(payload)
    conn = sqlite3.connect(tmp_path / "b.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 1
    conn.close()
    buf.close()


def test_fetch_in_order_and_delete(tmp_path: Path) -> None:
    buf = ReadingBuffer(tmp_path / "b.sqlite3")
    rows = [buf.append(payload) for _ in range(10)]
    first = buf.fetch_after(0, 4)
    assert [r.seq for r in first] == [1, 2, 3, 4]
    assert [r.seq for r in buf.fetch_after(first[-1].row_id, 100)] == list(range(5, 11))
    assert buf.delete([rows[0].row_id, rows[2].row_id, 99999]) == 2
    assert [r.seq for r in buf.fetch_after(0, 100)] == [2, 4, 5, 6, 7, 8, 9, 10]
    assert len(buf) == 8
    buf.close()


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    buf = ReadingBuffer(tmp_path / "b.sqlite3", max_readings=10)
    for _ in range(25):
        buf.append(payload)
    assert len(buf) == 10
    assert [r.seq for r in buf.fetch_after(0, 100)] == list(range(16, 26))
    stats = buf.stats()
    assert stats.dropped == 15
    assert stats.pending == 10
    buf.close()
    # The drop counter is persisted.
    again = ReadingBuffer(tmp_path / "b.sqlite3", max_readings=10)
    assert again.stats().dropped == 15
    again.close()


def test_survives_clean_restart_without_seq_gap(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = ReadingBuffer(path)
    originals = [buf.append(payload) for _ in range(3)]
    buf.close()
    again = ReadingBuffer(path)
    kept = again.fetch_after(0, 100)
    assert [(r.seq, r.payload) for r in kept] == [(r.seq, r.payload) for r in originals]
    assert again.append(payload).seq == 4
    again.close()


def test_seq_never_reused_after_unclean_stop(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = ReadingBuffer(path)
    for _ in range(3):
        buf.append(payload)
    acked = buf.fetch_after(0, 100)
    buf.delete(r.row_id for r in acked)  # published and acknowledged, then the power goes
    buf._conn.close()  # no clean close: the clean-shutdown mark is never written
    again = ReadingBuffer(path)
    seq = again.append(payload).seq
    assert seq > 3
    assert seq <= 1 + SEQ_BLOCK
    again.close()


def test_seq_continues_after_everything_was_acked(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = ReadingBuffer(path)
    rows = [buf.append(payload) for _ in range(5)]
    buf.delete(r.row_id for r in rows)
    buf.close()
    again = ReadingBuffer(path)
    assert len(again) == 0
    assert again.append(payload).seq == 6
    again.close()


def test_max_readings_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_readings"):
        ReadingBuffer(tmp_path / "b.sqlite3", max_readings=0)
