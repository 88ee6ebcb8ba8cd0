"""EventBridge's retry policy as a pure function: backoff bounds, Retry-After, age and count."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.bus.delivery import MAX_BACKOFF_SECONDS, RetryPolicy, backoff_seconds, judge_failure
from app.bus.targets import TargetFailure

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@given(attempt=st.integers(1, 500), seed=st.integers(0, 2**32))
def test_backoff_grows_but_stays_within_the_cap(attempt: int, seed: int) -> None:
    delay = backoff_seconds(attempt, random.Random(seed))
    ceiling = min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


@given(retry_after=st.floats(0, 10_000), attempt=st.integers(1, 20))
def test_retry_after_is_a_floor(retry_after: float, attempt: int) -> None:
    assert backoff_seconds(attempt, random.Random(1), retry_after) >= retry_after


def test_policy_defaults_are_eventbridges() -> None:
    assert RetryPolicy.of({}) == RetryPolicy(185, 86_400)
    assert RetryPolicy.of(
        {"RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}}
    ) == RetryPolicy(0, 60)


def judge(failure: TargetFailure, attempt: int, age: float, policy: RetryPolicy) -> object:
    return judge_failure(
        failure,
        attempt=attempt,
        created_at=T0,
        now=T0 + timedelta(seconds=age),
        policy=policy,
        rng=random.Random(7),
    )


def test_non_retryable_goes_straight_to_the_dead_letter_queue() -> None:
    verdict = judge(TargetFailure("404", retryable=False), 1, 0, RetryPolicy())
    assert verdict.retry_at is None  # type: ignore[attr-defined]
    assert verdict.reason == "non-retryable error"  # type: ignore[attr-defined]


def test_zero_retries_means_one_attempt() -> None:
    verdict = judge(TargetFailure("500", retryable=True), 1, 0, RetryPolicy(0, 86_400))
    assert verdict.retry_at is None  # type: ignore[attr-defined]


def test_retries_until_the_count_is_used_up() -> None:
    policy = RetryPolicy(2, 86_400)
    assert judge(TargetFailure("x", retryable=True), 2, 0, policy).retry_at is not None  # type: ignore[attr-defined]
    assert judge(TargetFailure("x", retryable=True), 3, 0, policy).retry_at is None  # type: ignore[attr-defined]


def test_an_event_older_than_the_maximum_age_is_dead_lettered() -> None:
    verdict = judge(TargetFailure("x", retryable=True), 1, 59.9, RetryPolicy(185, 60))
    assert verdict.retry_at is None  # type: ignore[attr-defined]
    assert "maximum event age" in verdict.reason  # type: ignore[attr-defined]


@given(attempt=st.integers(1, 184), age=st.floats(0, 80_000))
def test_a_retry_is_never_scheduled_past_the_maximum_age(attempt: int, age: float) -> None:
    verdict = judge(TargetFailure("x", retryable=True), attempt, age, RetryPolicy())
    retry_at = verdict.retry_at  # type: ignore[attr-defined]
    if retry_at is not None:
        assert retry_at - T0 <= timedelta(seconds=86_400)
        assert retry_at > T0 + timedelta(seconds=age)
