"""The telemetry classifier: every refusal kind, the accepted shape, and properties over
arbitrary input (it never raises; whatever it accepts is within the contract)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.iot.ingest.telemetry import (
    REJECTION_KINDS,
    Limits,
    Rejection,
    StatusChange,
    Telemetry,
    classify,
    format_ts,
    parse_topic,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits()
TOPIC = "smokehouse/bbq1/telemetry"


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "device_id": "bbq1",
        "seq": 1,
        "ts": "2026-05-01T11:59:59.500Z",
        "probes": [
            {"id": "pit", "temp_c": 110.25, "status": "ok"},
            {"id": "meat1", "temp_c": None, "status": "open"},
        ],
    }
    base.update(changes)
    return base


def run(data: Any, topic: str = TOPIC) -> Any:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return classify(topic, raw, LIMITS, NOW)


def kind(data: Any, topic: str = TOPIC) -> str:
    outcome = run(data, topic)
    assert isinstance(outcome, Rejection), outcome
    return outcome.kind


def test_a_valid_message_is_accepted_and_normalised() -> None:
    outcome = run(payload(ts="2026-05-01T13:59:59.5+02:00"))
    assert isinstance(outcome, Telemetry)
    assert outcome.payload.ts == datetime(2026, 5, 1, 11, 59, 59, 500000, tzinfo=UTC)
    detail = outcome.detail(NOW)
    assert detail == {
        "device_id": "bbq1",
        "seq": 1,
        "ts": "2026-05-01T11:59:59.500Z",
        "received_at": "2026-05-01T12:00:00.000Z",
        "probes": [
            {"id": "pit", "temp_c": 110.25, "status": "ok"},
            {"id": "meat1", "temp_c": None, "status": "open"},
        ],
    }


def test_integers_are_temperatures_and_unknown_fields_are_ignored() -> None:
    outcome = run(payload(probes=[{"id": "p", "temp_c": 100, "status": "ok"}], fw="1.2"))
    assert isinstance(outcome, Telemetry)
    assert outcome.payload.probes[0].temp_c == 100.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{nope", "not_json"),
        (b"\xff\xfe\x00", "not_json"),
        (b"", "not_json"),
        (b"[" * 100000, "not_json"),
        (
            b'{"device_id":"bbq1","seq":1,"ts":"2026-05-01T00:00:00Z","probes":[{"id":"p",'
            b'"temp_c":NaN,"status":"ok"}]}',
            "not_finite",
        ),
        (
            b'{"device_id":"bbq1","seq":1,"ts":"2026-05-01T00:00:00Z","probes":[{"id":"p",'
            b'"temp_c":-Infinity,"status":"ok"}]}',
            "not_finite",
        ),
        (
            b'{"device_id":"bbq1","seq":1,"ts":"2026-05-01T00:00:00Z","probes":[{"id":"p",'
            b'"temp_c":1e999,"status":"ok"}]}',
            "not_finite",
        ),
        (b"42", "schema"),
        (b'"online"', "schema"),
        (b"{}", "schema"),
        (b" " * (128 * 1024 + 1), "too_large"),
    ],
)
def test_raw_payload_refusals(data: bytes, expected: str) -> None:
    assert kind(data) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": "1"},
        {"seq": True},
        {"seq": -1},
        {"seq": 2**63},
        {"seq": 1.0},
        {"ts": "2026-05-01T12:00:00"},  # no offset
        {"ts": "2026-05-01"},
        {"ts": 1714560000},
        {"ts": "yesterday"},
        {"device_id": ""},
        {"device_id": "a/b"},
        {"device_id": "x" * 65},
        {"probes": []},
        {"probes": "pit=110"},
        {"probes": [{"id": "p", "temp_c": None, "status": "ok"}]},
        {"probes": [{"id": "p", "temp_c": 20.0, "status": "open"}]},
        {"probes": [{"id": "p", "temp_c": 20.0, "status": "melted"}]},
        {"probes": [{"id": "p", "temp_c": "20", "status": "ok"}]},
        {"probes": [{"id": "p", "temp_c": 1.0, "status": "ok"}] * 2},
        {"probes": [{"id": "p", "temp_c": 1.0, "status": "ok"}] * 33},
        {"probes": [{"id": "", "temp_c": 1.0, "status": "ok"}]},
        {"probes": [{"temp_c": 1.0, "status": "ok"}]},
    ],
)
def test_schema_violations(changes: dict[str, Any]) -> None:
    outcome = run(payload(**changes))
    assert isinstance(outcome, Rejection)
    assert outcome.kind == "schema"
    assert outcome.device_id == "bbq1"
    assert outcome.reason


def test_a_forged_topic_is_a_mismatch_named_after_the_topic() -> None:
    outcome = run(payload(device_id="other"))
    assert isinstance(outcome, Rejection)
    assert (outcome.kind, outcome.device_id) == ("topic_mismatch", "bbq1")


@pytest.mark.parametrize("temp", [-60.1, 1000.5, -273.0, 5000.0])
def test_impossible_temperatures(temp: float) -> None:
    assert kind(payload(probes=[{"id": "p", "temp_c": temp, "status": "ok"}])) == "impossible"


@pytest.mark.parametrize("temp", [-60.0, 0.0, 1000.0])
def test_bounds_are_inclusive(temp: float) -> None:
    assert isinstance(run(payload(probes=[{"id": "p", "temp_c": temp, "status": "ok"}])), Telemetry)


def test_the_future_is_impossible_but_the_past_is_replay() -> None:
    assert kind(payload(ts=format_ts(NOW + timedelta(days=1, seconds=1)))) == "impossible"
    assert isinstance(run(payload(ts=format_ts(NOW - timedelta(days=30)))), Telemetry)


def test_status_messages() -> None:
    assert classify("smokehouse/bbq1/status", b"online", LIMITS, NOW) == StatusChange(
        "bbq1", "online"
    )
    assert classify("smokehouse/bbq1/status", b"offline\n", LIMITS, NOW) == StatusChange(
        "bbq1", "offline"
    )
    refused = classify("smokehouse/bbq1/status", b"ONLINE!", LIMITS, NOW)
    assert isinstance(refused, Rejection)
    assert refused.kind == "schema"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("smokehouse/bbq1/telemetry", ("bbq1", "telemetry")),
        ("smokehouse/bbq1/status", ("bbq1", "status")),
        ("smokehouse/bbq1/other", None),
        ("smokehouse/a/b/telemetry", None),
        ("other/bbq1/telemetry", None),
        ("smokehouse/+/telemetry", None),
    ],
)
def test_topics(topic: str, expected: Any) -> None:
    assert parse_topic(topic) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    outcome = classify(TOPIC, data, LIMITS, NOW)
    assert isinstance(outcome, Rejection | Telemetry)
    if isinstance(outcome, Rejection):
        assert outcome.kind in REJECTION_KINDS


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "device_id": st.sampled_from(["bbq1", "bbq2", 5, None]),
            "seq": st.one_of(st.integers(min_value=-5, max_value=2**64), st.text(max_size=3)),
            "ts": st.sampled_from(["2026-05-01T00:00:00Z", "2030-01-01T00:00:00Z", "x", 3]),
            "probes": st.lists(
                st.fixed_dictionaries(
                    {
                        "id": st.sampled_from(["pit", "meat1", "meat2", "", "a/b"]),
                        "temp_c": st.one_of(st.none(), st.floats(), st.integers()),
                        "status": st.sampled_from(["ok", "open", "short", "error", "x"]),
                    }
                ),
                max_size=5,
            ),
        },
        optional={"extra": json_values},
    )
)
def test_whatever_is_accepted_is_within_the_contract(data: dict[str, Any]) -> None:
    try:
        raw = json.dumps(data).encode()
    except ValueError:
        return
    outcome = classify(TOPIC, raw, LIMITS, NOW)
    if isinstance(outcome, Rejection):
        assert outcome.kind in REJECTION_KINDS
        assert outcome.reason
        return
    assert isinstance(outcome, Telemetry)
    message = outcome.payload
    assert message.device_id == "bbq1"
    assert 0 <= message.seq < 2**63
    assert message.ts <= NOW + LIMITS.max_future
    assert len({p.id for p in message.probes}) == len(message.probes) >= 1
    for probe in message.probes:
        if probe.status == "ok":
            assert probe.temp_c is not None
            assert math.isfinite(probe.temp_c)
            assert LIMITS.min_temp_c <= probe.temp_c <= LIMITS.max_temp_c
        else:
            assert probe.temp_c is None
    # Its bus detail is JSON and round-trips.
    assert json.loads(json.dumps(outcome.detail(NOW)))["seq"] == message.seq
