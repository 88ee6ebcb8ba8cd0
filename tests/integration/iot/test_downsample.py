"""Downsampled readings: SQL buckets against a reference in Python, and the two GraphQL shapes
(``points`` objects, ``columns`` arrays) carrying the same buckets — on SQLite and PostgreSQL.
The rollup's own properties (late readings, redelivery, purge) are in test_rollup.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete

from app.config import Settings
from app.db import get_database
from app.graphql.iot import buckets
from app.iot import readings
from app.iot.models import Reading, ReadingRollup
from tests.integration.graphql_client import data
from tests.keys import VIEWER_SECRET

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def row(probe: str, seq: int, ts: datetime, temp: float | None) -> dict[str, Any]:
    return {
        "device_id": "pi1",
        "probe_id": probe,
        "seq": seq,
        "ts": ts,
        "received_at": ts,
        "cook_id": None,
        "temp_c": temp,
        "raw_temp_c": temp,
        "status": "ok" if temp is not None else "open",
        "rate_c_per_min": None,
    }


def store(settings: Settings, rows: list[dict[str, Any]]) -> None:
    with get_database(settings.sqlalchemy_url).session() as session:
        session.execute(delete(Reading))
        session.execute(delete(ReadingRollup))
        readings.store(session, rows)


def layout(start: datetime, end: datetime, max_points: int) -> tuple[datetime, timedelta]:
    """The documented bucket rule: equal widths from ``start`` when a bucket is at most 10 s;
    longer ones a whole multiple of 10 s, starting at ``start`` rounded down to 10 s."""
    stride = timedelta(
        microseconds=math.ceil((end - start) / timedelta(microseconds=1) / max_points)
    )
    if stride <= timedelta(seconds=10):
        return start, stride
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    origin = epoch + (start - epoch) // timedelta(seconds=10) * timedelta(seconds=10)
    tens = math.ceil((end - origin) / timedelta(seconds=10) / max_points)
    return origin, timedelta(seconds=10 * tens)


def reference(
    rows: list[dict[str, Any]], start: datetime, end: datetime, max_points: int
) -> dict[str, list[tuple[datetime, float | None, float | None, float | None]]]:
    """The buckets as the docs define them (:func:`layout`), empty ones left out; a row stored
    twice (same device, seq, probe) counts once."""
    origin, stride = layout(start, end, max_points)
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = {}
    unique = {(r["device_id"], r["seq"], r["probe_id"]): r for r in reversed(rows)}
    for r in unique.values():
        if start <= r["ts"] < end:
            index = (r["ts"] - origin) // stride
            grouped.setdefault(r["probe_id"], {}).setdefault(index, []).append(r)
    found = {}
    for probe, by_index in grouped.items():
        series = []
        for index in sorted(by_index):
            members = by_index[index]
            temps = [m["temp_c"] for m in members if m["temp_c"] is not None]
            series.append(
                (
                    min(m["ts"] for m in members),
                    sum(temps) / len(temps) if temps else None,
                    min(temps) if temps else None,
                    max(temps) if temps else None,
                )
            )
        found[probe] = series
    return found


def assert_same(found: dict[str, list[Any]], expected: dict[str, list[Any]], limit: int) -> None:
    assert sorted(found) == sorted(expected)
    for probe, series in expected.items():
        got = [(b.ts, b.avg_c, b.min_c, b.max_c) for b in found[probe]]
        assert len(got) == len(series) <= limit
        for (ts, avg, low, high), (ets, eavg, elow, ehigh) in zip(got, series, strict=True):
            assert (ts, low, high) == (ets, elow, ehigh)
            assert avg == pytest.approx(eavg)


# readings a quarter second past whole seconds, bucket widths whole seconds: no reading sits
# on a boundary, where SQLite's float day numbers could round either way
readings_strategy = st.lists(
    st.tuples(
        st.sampled_from(["pit", "food"]),
        st.integers(min_value=-30, max_value=400),
        st.one_of(st.none(), st.integers(min_value=-400, max_value=4000).map(lambda t: t / 8)),
    ),
    max_size=60,
)


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=readings_strategy,
    width_s=st.integers(min_value=1, max_value=60),
    max_points=st.integers(min_value=1, max_value=12),
)
def test_buckets_match_a_python_reference(
    settings: Settings, raw: list[tuple[str, int, float | None]], width_s: int, max_points: int
) -> None:
    rows = [
        row(probe, seq, T0 + timedelta(seconds=second, milliseconds=250), temp)
        for seq, (probe, second, temp) in enumerate(raw)
    ]
    store(settings, rows)
    end = T0 + timedelta(seconds=width_s * max_points)
    with get_database(settings.sqlalchemy_url).session() as session:
        found = buckets(session, "pi1", T0, end, max_points)
    assert_same(found, reference(rows, T0, end, max_points), max_points)


def test_a_redelivered_batch_changes_no_bucket(settings: Settings) -> None:
    rows = [row("pit", s, T0 + timedelta(seconds=s), 100.0 + s % 5) for s in range(120)]
    store(settings, rows)
    with get_database(settings.sqlalchemy_url).session() as session:
        before = buckets(session, "pi1", T0, T0 + timedelta(minutes=2), 12)
        readings.store(session, rows[40:80])  # the same (device, seq, probe): skipped
    with get_database(settings.sqlalchemy_url).session() as session:
        assert buckets(session, "pi1", T0, T0 + timedelta(minutes=2), 12) == before


def test_points_and_columns_carry_the_same_buckets(settings: Settings, client: TestClient) -> None:
    rows = [row("pit", s, T0 + timedelta(seconds=s), 100.0 + s % 7) for s in range(600)]
    rows += [
        row("food", s, T0 + timedelta(seconds=s), None if s < 60 else s / 10) for s in range(600)
    ]
    rows += [row("pit", 10_000, T0 + timedelta(seconds=30.5), 500.0)]  # late, out of order
    store(settings, rows)
    query = """query($s: DateTime!, $e: DateTime!) {
        readings(deviceId: "pi1", start: $s, end: $e, maxPoints: 20) {
          probeId points { ts tempC minC maxC } columns { ts tempC minC maxC } } }"""
    end = (T0 + timedelta(minutes=10)).isoformat()
    series = data(client, query, VIEWER_SECRET, s=T0.isoformat(), e=end)["readings"]
    assert [s["probeId"] for s in series] == ["food", "pit"]
    for one in series:
        points, columns = one["points"], one["columns"]
        assert len(points) == 20
        assert columns == {key: [p[key] for p in points] for key in ("ts", "tempC", "minC", "maxC")}
    food, pit = series
    assert food["columns"]["tempC"][:3] == [None, None, pytest.approx(7.45)]  # open, then 60..89 s
    assert pit["columns"]["maxC"][1] == 500.0  # the late reading landed in its own bucket
