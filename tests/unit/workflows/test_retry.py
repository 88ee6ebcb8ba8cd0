"""Retry/Catch matching and backoff (no sleeping: delays are numbers)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from app.workflows.asl import errors
from app.workflows.asl.retry import (
    Catcher,
    Retrier,
    backoff_delay,
    base_delay,
    error_matches,
    find_catcher,
    find_retrier,
)


def test_defaults() -> None:
    retrier = Retrier.from_json({"ErrorEquals": ["States.ALL"]})
    assert (retrier.interval_seconds, retrier.max_attempts, retrier.backoff_rate) == (1, 3, 2.0)
    assert retrier.max_delay_seconds is None
    assert retrier.jitter_strategy == "NONE"
    assert [base_delay(retrier, n) for n in range(3)] == [1.0, 2.0, 4.0]


def test_doc_backoff_example() -> None:
    """IntervalSeconds 3, BackoffRate 1.5: 3 s before the first retry, 4.5 s before the second."""
    retrier = Retrier.from_json(
        {
            "ErrorEquals": ["States.Timeout"],
            "IntervalSeconds": 3,
            "MaxAttempts": 2,
            "BackoffRate": 1.5,
        }
    )
    assert [base_delay(retrier, n) for n in range(2)] == [3.0, 4.5]


def test_max_delay_seconds_caps_the_interval() -> None:
    retrier = Retrier.from_json(
        {
            "ErrorEquals": ["States.ALL"],
            "IntervalSeconds": 2,
            "BackoffRate": 2,
            "MaxAttempts": 10,
            "MaxDelaySeconds": 10,
        }
    )
    assert [base_delay(retrier, n) for n in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert base_delay(retrier, 5000) == 10.0  # no overflow


def test_full_jitter_uses_the_injected_random_source() -> None:
    retrier = Retrier.from_json(
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 4, "JitterStrategy": "FULL"}
    )
    assert backoff_delay(retrier, 1, lambda: 0.25) == 2.0
    assert backoff_delay(retrier, 0, lambda: 0.0) == 0.0


def test_error_matching_rules() -> None:
    assert error_matches(["States.ALL"], "Lambda.Unknown")
    assert error_matches(["States.ALL"], errors.TIMEOUT)
    assert not error_matches(["States.ALL"], errors.RUNTIME)
    assert not error_matches([errors.RUNTIME], errors.RUNTIME)
    assert not error_matches(["States.ALL"], errors.DATA_LIMIT_EXCEEDED)
    assert error_matches(["States.ALL"], errors.DATA_LIMIT_EXCEEDED, from_task=True)
    assert error_matches([errors.DATA_LIMIT_EXCEEDED], errors.DATA_LIMIT_EXCEEDED)
    assert error_matches(["States.TaskFailed"], "Custom.Error")
    assert error_matches(["States.TaskFailed"], errors.PERMISSIONS)
    assert not error_matches(["States.TaskFailed"], errors.TIMEOUT)
    assert not error_matches(["States.TaskFailed"], errors.HEARTBEAT_TIMEOUT)
    assert error_matches(["States.Timeout"], errors.HEARTBEAT_TIMEOUT)
    assert error_matches(["States.HeartbeatTimeout"], errors.HEARTBEAT_TIMEOUT)
    assert not error_matches(["Other"], "Custom.Error")


def test_first_matching_retrier_wins_even_when_exhausted() -> None:
    retriers = [
        Retrier(("A",), max_attempts=0),
        Retrier(("A", "B")),
        Retrier(("States.ALL",)),
    ]
    assert find_retrier(retriers, "A") == 0
    assert find_retrier(retriers, "B") == 1
    assert find_retrier(retriers, "C") == 2
    assert find_retrier([], "C") is None


def test_find_catcher() -> None:
    catchers = [
        Catcher.from_json({"ErrorEquals": ["A"], "Next": "X"}),
        Catcher.from_json({"ErrorEquals": ["States.ALL"], "Next": "Y", "ResultPath": None}),
    ]
    first = find_catcher(catchers, "A")
    assert first is not None
    assert first.next == "X"
    assert first.result_path is not None
    assert first.result_path.text == "$"
    other = find_catcher(catchers, "B")
    assert other is not None
    assert other.next == "Y"
    assert other.result_path is None
    assert find_catcher(catchers, errors.RUNTIME) is None


@given(
    interval=st.integers(1, 99999999),
    rate=st.floats(1.0, 10.0),
    max_delay=st.integers(1, 31622400),
    attempt=st.integers(0, 200),
    jitter=st.sampled_from(["FULL", "NONE"]),
    seed=st.integers(0, 2**32),
)
def test_backoff_never_exceeds_max_delay(
    interval: int, rate: float, max_delay: int, attempt: int, jitter: str, seed: int
) -> None:
    retrier = Retrier(("States.ALL",), interval, 3, rate, max_delay, jitter)
    delay = backoff_delay(retrier, attempt, random.Random(seed).random)
    assert 0 <= delay <= max_delay
    if jitter == "NONE":
        assert delay == min(max_delay, base_delay(retrier, attempt))


@given(
    interval=st.integers(1, 1000),
    rate=st.floats(1.0, 3.0),
    n=st.integers(0, 30),
    r=st.floats(0.0, 0.999999),
)
def test_full_jitter_is_bounded_by_the_computed_backoff(
    interval: int, rate: float, n: int, r: float
) -> None:
    full = Retrier(("X",), interval, 3, rate, None, "FULL")
    assert 0 <= backoff_delay(full, n, lambda: r) <= base_delay(full, n)
    assert base_delay(full, n + 1) >= base_delay(full, n)
