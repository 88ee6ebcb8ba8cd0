"""Pure parts of enrich-and-store and ingest batching: default probe names and roles, the
smoothed rate of change, event chunking under EventBridge's limits, the refusal log limiter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.iot.enrich import default_name, default_role, next_rate
from app.iot.ingest.batch import MAX_REQUEST_BYTES, chunk_details, requests_of
from app.iot.ingest.metrics import RateLimitedLog

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("probe_id", "role"),
    [
        ("pit", "pit"),
        ("Pit-2", "pit"),
        ("smoker_pit", "pit"),
        ("ambient", "ambient"),
        ("amb", "ambient"),
        ("meat1", "food"),
        ("probe3", "food"),
    ],
)
def test_default_roles(probe_id: str, role: str) -> None:
    assert default_role(probe_id) == role


def test_default_names_never_clash() -> None:
    assert default_name("pit", []) == "Pit"
    assert default_name("pit", ["Pit"]) == "Probe 1"
    assert default_name("ambient", []) == "Ambient"
    assert default_name("food", ["Probe 1", "Probe 3"]) == "Probe 2"
    taken: list[str] = []
    for role in ["pit", "food", "food", "pit", "ambient", "food"]:
        taken.append(default_name(role, taken))
    assert len(set(taken)) == len(taken)


def test_rate_needs_two_ok_readings_close_enough() -> None:
    assert next_rate(None, None, None, T0, 50.0, 60) is None
    assert next_rate(T0, None, None, T0 + timedelta(seconds=5), 50.0, 60) is None
    assert next_rate(T0, 50.0, None, T0 + timedelta(seconds=5), None, 60) is None
    assert next_rate(T0, 50.0, 1.0, T0, 51.0, 60) is None  # same instant
    assert next_rate(T0, 50.0, 1.0, T0 + timedelta(minutes=11), 51.0, 60) is None  # a gap
    assert next_rate(T0, 50.0, None, T0 + timedelta(seconds=30), 51.0, 60) == pytest.approx(2.0)


def test_rate_settles_on_a_steady_slope_and_damps_noise() -> None:
    rate: float | None = None
    temp, ts = 60.0, T0
    noise = [0.3, -0.3] * 300
    for step in range(600):  # ten minutes at 1 s, 0.5 °C/min plus ±0.3 °C of noise
        new_ts = ts + timedelta(seconds=1)
        new_temp = 60.0 + (step + 1) / 120.0
        rate = next_rate(
            ts, temp + noise[step - 1] if step else temp, rate, new_ts, new_temp + noise[step], 60
        )
        ts, temp = new_ts, new_temp
    assert rate is not None
    assert rate == pytest.approx(0.5, abs=0.6)  # raw 1 s slopes would swing by ±36 °C/min


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-50, 500),
    st.floats(-50, 500),
    st.one_of(st.none(), st.floats(-100, 100)),
    st.floats(0.01, 600),
)
def test_rate_lies_between_the_previous_rate_and_the_new_slope(
    before: float, after: float, previous: float | None, seconds: float
) -> None:
    later = T0 + timedelta(seconds=seconds)
    seconds = (later - T0).total_seconds()  # microsecond resolution
    rate = next_rate(T0, before, previous, later, after, 60)
    assert rate is not None
    slope = (after - before) / seconds * 60
    low, high = sorted([slope, slope if previous is None else previous])
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    assert low - slack <= rate <= high + slack


def message(n: int, size: int = 200) -> dict[str, Any]:
    return {"device_id": "d", "seq": n, "pad": "x" * size}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5000), max_size=60), st.integers(1000, 300_000))
def test_chunks_keep_every_message_once_in_order_within_the_limit(
    sizes: list[int], limit: int
) -> None:
    messages = [message(n, size) for n, size in enumerate(sizes)]
    chunks = list(chunk_details(messages, limit))
    back = [m for chunk in chunks for m in json.loads(chunk)["messages"]]
    assert back == messages
    for chunk in chunks:
        assert len(chunk) <= limit or len(json.loads(chunk)["messages"]) == 1


def test_requests_respect_ten_entries_and_the_request_size() -> None:
    entries = [
        {"Source": "s", "DetailType": "t", "Detail": "x" * size}
        for size in [10] * 25 + [200_000, 100_000, 10]
    ]
    requests = list(requests_of(entries))
    assert [len(r) for r in requests] == [10, 10, 6, 2]
    assert [e for r in requests for e in r] == entries
    for request in requests:
        assert sum(len(e["Detail"]) + 2 for e in request) <= MAX_REQUEST_BYTES


def test_refusals_are_logged_once_per_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = RateLimitedLog(interval=60, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="smokehouse.iot.ingest"):
        assert limiter.refused("schema", "t", "bad")
        assert not limiter.refused("schema", "t", "bad")
        assert limiter.refused("not_json", "t", "bad")
        now[0] = 61.0
        assert limiter.refused("schema", "t", "bad")
    assert len(caplog.records) == 3
    assert "1 more of this kind" in caplog.records[-1].getMessage()
