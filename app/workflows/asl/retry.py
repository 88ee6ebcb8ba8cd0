"""Retry and Catch: error matching and backoff.

Matching (developer guide, "Handling errors in Step Functions workflows"):

* ``States.ALL`` matches any error except ``States.Runtime`` and the terminal
  ``States.DataLimitExceeded``;
* ``States.TaskFailed`` matches any error except ``States.Timeout`` (and so the heartbeat
  timeout, a kind of timeout), ``States.Runtime`` and ``States.DataLimitExceeded``;
* ``States.Timeout`` also matches ``States.HeartbeatTimeout``;
* ``States.Runtime`` is never retried nor caught.

Backoff: the n-th retry of a retrier (n = 0, 1, ...) waits
``min(IntervalSeconds * BackoffRate ** n, MaxDelaySeconds)`` seconds; with
``JitterStrategy: FULL`` a uniformly random delay between 0 and that value, drawn from the random
source the caller passes (no global randomness).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from app.common.jsonpath import JsonPath, parse
from app.workflows.asl import errors

DEFAULT_INTERVAL_SECONDS: Final = 1
DEFAULT_MAX_ATTEMPTS: Final = 3
DEFAULT_BACKOFF_RATE: Final = 2.0
MAX_INTERVAL_SECONDS: Final = 99999999
MAX_ATTEMPTS_LIMIT: Final = 99999999
MAX_DELAY_SECONDS_LIMIT: Final = 31622400
#: upper bound for a delay when ``MaxDelaySeconds`` is absent (keeps the arithmetic finite)
_UNBOUNDED_DELAY_CAP: Final = 10.0**12


@dataclass(frozen=True, slots=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_rate: float = DEFAULT_BACKOFF_RATE
    max_delay_seconds: int | None = None
    jitter_strategy: str = "NONE"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Retrier:
        return cls(
            error_equals=tuple(raw["ErrorEquals"]),
            interval_seconds=raw.get("IntervalSeconds", DEFAULT_INTERVAL_SECONDS),
            max_attempts=raw.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS),
            backoff_rate=float(raw.get("BackoffRate", DEFAULT_BACKOFF_RATE)),
            max_delay_seconds=raw.get("MaxDelaySeconds"),
            jitter_strategy=raw.get("JitterStrategy", "NONE"),
        )


#: ``ResultPath`` of a catcher: ``None`` discards the error output; absent means ``$``.
@dataclass(frozen=True, slots=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: JsonPath | None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Catcher:
        result_path = raw.get("ResultPath", "$")
        return cls(
            error_equals=tuple(raw["ErrorEquals"]),
            next=raw["Next"],
            result_path=None if result_path is None else parse(result_path),
        )


def error_matches(error_equals: Sequence[str], error: str, *, from_task: bool = False) -> bool:
    """Does ``error`` match a retrier's or catcher's ``ErrorEquals``?

    ``from_task``: the error came from a task (its result was too large, it timed out, it
    reported a failure). A ``States.DataLimitExceeded`` raised for a task's result is caught by
    ``States.ALL`` (what Step Functions does, as recorded in LocalStack's AWS snapshots); one
    raised for a state's own input/output is terminal and matches only by its exact name.
    """
    if error == errors.RUNTIME:
        return False
    if error in error_equals:
        return True
    if error == errors.DATA_LIMIT_EXCEEDED and not from_task:
        return False
    if errors.ALL in error_equals:
        return True
    if errors.TIMEOUT in error_equals and error == errors.HEARTBEAT_TIMEOUT:
        return True
    return errors.TASK_FAILED in error_equals and error not in (
        errors.TIMEOUT,
        errors.HEARTBEAT_TIMEOUT,
    )


def find_retrier(retriers: Sequence[Retrier], error: str, *, from_task: bool = False) -> int | None:
    """Index of the first retrier whose ``ErrorEquals`` matches (its attempts may be used up:
    the interpreter then goes to Catch; it does not fall through to later retriers)."""
    for i, retrier in enumerate(retriers):
        if error_matches(retrier.error_equals, error, from_task=from_task):
            return i
    return None


def find_catcher(
    catchers: Sequence[Catcher], error: str, *, from_task: bool = False
) -> Catcher | None:
    for catcher in catchers:
        if error_matches(catcher.error_equals, error, from_task=from_task):
            return catcher
    return None


def base_delay(retrier: Retrier, retry_index: int) -> float:
    """The delay before retry number ``retry_index`` (0-based) without jitter."""
    try:
        delay = retrier.interval_seconds * retrier.backoff_rate**retry_index
    except OverflowError:
        delay = _UNBOUNDED_DELAY_CAP
    delay = min(float(delay), _UNBOUNDED_DELAY_CAP)
    if retrier.max_delay_seconds is not None:
        delay = min(delay, float(retrier.max_delay_seconds))
    return delay


def backoff_delay(retrier: Retrier, retry_index: int, random: Callable[[], float]) -> float:
    """Seconds to wait before retry ``retry_index``; ``random()`` must return a float in [0, 1)."""
    delay = base_delay(retrier, retry_index)
    if retrier.jitter_strategy == "FULL":
        return delay * random()
    return delay
