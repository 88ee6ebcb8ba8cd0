"""The 10 s readings rollup kept by ``readings.store``: exact against the raw readings however
they arrive (in several batches, redelivered, late and out of order), the downsampled buckets it
feeds equal to a Python reference, purged with the readings — on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.command import downgrade
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from app.config import Settings
from app.db import get_database
from app.iot import readings
from app.iot.downsample import buckets
from app.iot.models import Reading, ReadingRollup
from app.migrate import alembic_config, upgrade
from tests.integration.iot.test_downsample import assert_same, reference, row

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
Rollup = dict[tuple[str, datetime], tuple[int, float, float | None, float | None, datetime]]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    return settings_factory(database_url=database_url)


def clear(settings: Settings) -> None:
    with get_database(settings.sqlalchemy_url).session() as session:
        session.execute(delete(Reading))
        session.execute(delete(ReadingRollup))


def store(settings: Settings, batch: list[dict[str, Any]]) -> None:
    with get_database(settings.sqlalchemy_url).session() as session:
        readings.store(session, batch)


def rollup(settings: Settings) -> Rollup:
    with get_database(settings.sqlalchemy_url).session() as session:
        return {
            (r.probe_id, r.bucket_start): (r.n, r.sum_c, r.min_c, r.max_c, r.first_ts)
            for r in session.scalars(select(ReadingRollup))
        }


def expected_rollup(rows: list[dict[str, Any]]) -> Rollup:
    """Sums per probe and epoch-aligned 10 s bucket of the distinct (device, seq, probe) rows,
    the first stored of duplicates winning (as ON CONFLICT DO NOTHING)."""
    unique = {(r["device_id"], r["seq"], r["probe_id"]): r for r in reversed(rows)}
    grouped: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for r in unique.values():
        grouped.setdefault((r["probe_id"], readings.rollup_bucket(r["ts"])), []).append(r)
    found: Rollup = {}
    for key, members in grouped.items():
        temps = [m["temp_c"] for m in members if m["temp_c"] is not None]
        first = min(m["ts"] for m in members)
        found[key] = (
            len(temps),
            sum(temps),
            min(temps, default=None),
            max(temps, default=None),
            first,
        )
    return found


def assert_rollup(got: Rollup, expected: Rollup) -> None:
    assert sorted(got) == sorted(expected)
    for key, (n, total, low, high, first) in expected.items():
        assert got[key][0] == n
        assert got[key][1] == pytest.approx(total)
        assert got[key][2:] == (low, high, first)


arrivals = st.lists(
    st.tuples(
        st.sampled_from(["pit", "food"]),
        st.integers(min_value=0, max_value=40),  # seq: repeats are redeliveries
        st.integers(min_value=-30_000, max_value=400_000),  # ms after T0
        st.one_of(st.none(), st.integers(min_value=-400, max_value=4000).map(lambda t: t / 8)),
    ),
    max_size=50,
)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=arrivals,
    cuts=st.lists(st.integers(min_value=0, max_value=50), max_size=3),
    start_ms=st.integers(min_value=-20_000, max_value=100_000),
    span_ms=st.integers(min_value=1_000, max_value=500_000),
    max_points=st.integers(min_value=1, max_value=40),
)
def test_rollup_and_its_buckets_match_the_raw_readings(
    settings: Settings,
    raw: list[tuple[str, int, int, float | None]],
    cuts: list[int],
    start_ms: int,
    span_ms: int,
    max_points: int,
) -> None:
    """In any order, split into any batches, with redeliveries: the rollup is the readings'
    sums, and buckets over any range (rollup inside, raw readings at the ragged ends) are the
    reference's."""
    clear(settings)
    rows = [row(probe, seq, T0 + timedelta(milliseconds=ms), temp) for probe, seq, ms, temp in raw]
    bounds = [0, *sorted(cuts), len(rows)]
    for low, high in itertools.pairwise(bounds):
        store(settings, rows[low:high])
    assert_rollup(rollup(settings), expected_rollup(rows))
    start = T0 + timedelta(milliseconds=start_ms)
    end = start + timedelta(milliseconds=span_ms)
    with get_database(settings.sqlalchemy_url).session() as session:
        found = buckets(session, "pi1", start, end, max_points)
    assert_same(found, reference(rows, start, end, max_points), max_points)


def test_a_redelivered_batch_adds_nothing_and_a_late_reading_lands_in_its_bucket(
    settings: Settings,
) -> None:
    rows = [row("pit", s, T0 + timedelta(seconds=s), 100.0 + s % 5) for s in range(60)]
    store(settings, rows)
    before = rollup(settings)
    store(settings, rows[10:50])  # redelivered: the same (device, seq, probe)
    assert rollup(settings) == before
    late = row("pit", 1_000, T0 + timedelta(seconds=12.5), 300.0)
    store(settings, [late])
    after = rollup(settings)
    n, total, low, high, first = after[("pit", T0 + timedelta(seconds=10))]
    assert (n, low, high, first) == (11, 100.0, 300.0, T0 + timedelta(seconds=10))
    assert total == pytest.approx(sum(100.0 + s % 5 for s in range(10, 20)) + 300.0)
    assert {k: v for k, v in after.items() if k[1] != T0 + timedelta(seconds=10)} == {
        k: v for k, v in before.items() if k[1] != T0 + timedelta(seconds=10)
    }
    with get_database(settings.sqlalchemy_url).session() as session:
        hour = buckets(session, "pi1", T0, T0 + timedelta(hours=1), 60)  # 60 s buckets: rollup
    assert hour["pit"][0].max_c == 300.0
    assert hour["pit"][0].avg_c == pytest.approx((sum(100.0 + s % 5 for s in range(60)) + 300) / 61)


def test_open_probes_make_buckets_without_a_temperature(settings: Settings) -> None:
    store(settings, [row("food", s, T0 + timedelta(seconds=s), None) for s in range(30)])
    assert rollup(settings)[("food", T0)] == (0, 0.0, None, None, T0)
    with get_database(settings.sqlalchemy_url).session() as session:
        found = buckets(session, "pi1", T0, T0 + timedelta(hours=1), 10)
    assert [(b.ts, b.avg_c, b.min_c, b.max_c) for b in found["food"]] == [(T0, None, None, None)]


def test_the_retention_purge_removes_expired_rollup_buckets(settings: Settings) -> None:
    """A bucket goes once it lies wholly before the cutoff (the one holding the cutoff stays
    until the next run moves past it), in bounded batches like the readings."""
    year = timedelta(days=365)
    now = T0 + timedelta(days=400)
    store(settings, [row("pit", s, T0 + timedelta(seconds=s), 90.0) for s in range(0, 60, 2)])
    store(settings, [row("pit", 100 + s, now - timedelta(seconds=s), 95.0) for s in range(5)])
    with get_database(settings.sqlalchemy_url).session() as session:
        first = readings.purge_batch(session, T0 + year + timedelta(seconds=25), 365, 100)
    assert (first["readings"], first["rollup"]) == (13, 2)  # 0..24 s; buckets 0 s and 10 s
    assert min(bucket for _, bucket in rollup(settings)) == T0 + timedelta(seconds=20)
    with get_database(settings.sqlalchemy_url).session() as session:
        assert readings.purge_batch(session, now, 365, 3)["rollup"] == 3
        rest = readings.purge_batch(session, now, 365, 100)
    assert rest["rollup"] == 1
    recent = {("pit", readings.rollup_bucket(now - timedelta(seconds=s))) for s in range(5)}
    assert set(rollup(settings)) == recent


def test_rebuilding_the_rollup_gives_what_store_kept(settings: Settings) -> None:
    """The backfill (as in migration 0010, and for bulk loads that bypass ``store``)."""
    rows = [row("pit", s, T0 + timedelta(seconds=s * 0.7), s % 9 or None) for s in range(200)]
    rows += [row("food", s, T0 - timedelta(seconds=s * 3.3), float(s)) for s in range(100)]
    store(settings, rows)
    kept = rollup(settings)
    with get_database(settings.sqlalchemy_url).session() as session:
        readings.rebuild_rollup(session)
    assert_rollup(rollup(settings), kept)


def test_migration_0010_backfills_the_rollup_from_existing_readings(
    settings: Settings, database_url: str
) -> None:
    downgrade(alembic_config(database_url), "0009")
    rows = [row("pit", s, T0 + timedelta(seconds=s * 1.3), s % 11 or None) for s in range(150)]
    rows += [row("food", s, T0 - timedelta(seconds=s * 4.1), s / 3) for s in range(80)]
    with get_database(settings.sqlalchemy_url).session() as session:
        session.execute(insert(Reading), rows)
    upgrade(database_url)
    assert_rollup(rollup(settings), expected_rollup(rows))
