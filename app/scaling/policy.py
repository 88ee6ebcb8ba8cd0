"""How many workers a queue should have: a pure function of demand, workers, time and history.

The anchors are AWS's *backlog per instance* target tracking and Kubernetes' HPA/KEDA:

* **Target backlog per worker.** A worker runs ``concurrency`` tasks at once; if a task takes
  ``service_time`` seconds and a message may wait ``target_latency`` seconds, one worker can carry
  ``concurrency * target_latency / service_time`` messages of backlog (AWS's "acceptable backlog
  per instance"). Without a measured service time the configured ``target_backlog_per_worker``
  is used. The raw recommendation is ``ceil(demand / backlog_per_worker)``, where demand counts
  what is queued, reserved (prefetched, unacked) and running.
* **Scale up at once, down slowly.** As in HPA's default behaviour there is no stabilization for
  scaling up, and scaling down uses the *highest* recommendation seen within the stabilization
  window (default 300 s): a dip in demand must last the whole window before a worker goes.
* **Scale to zero after a cooldown** (KEDA's ``cooldownPeriod``): while demand was seen within the
  cooldown at least one worker stays, however low ``min_workers`` is; once the queue has been idle
  for the whole cooldown the pool goes straight to ``min_workers``.
* **Never below the busy workers.** A busy worker is never chosen for scale-down, so a target
  below the busy count could not be carried out; the decision says so instead of pretending.

No clock, no I/O: ``decide`` gets ``now`` and the previous ``PolicyState`` and returns the next one,
so the autoscaler can persist the state and property tests can replay any series of inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """One queue's scaling settings (defaults follow HPA and KEDA)."""

    min_workers: int = 0
    max_workers: int = 10
    concurrency: int = 1
    target_backlog_per_worker: float | None = None  # None: ``concurrency`` messages per worker
    target_latency_seconds: float | None = None  # with a measured service time: AWS's formula
    stabilization_seconds: float = 300.0
    idle_cooldown_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.min_workers < 0:
            raise ValueError("min_workers must be >= 0")
        if self.max_workers < max(self.min_workers, 1):
            raise ValueError("max_workers must be >= min_workers and >= 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.target_backlog_per_worker is not None and self.target_backlog_per_worker <= 0:
            raise ValueError("target_backlog_per_worker must be > 0")
        if self.target_latency_seconds is not None and self.target_latency_seconds <= 0:
            raise ValueError("target_latency_seconds must be > 0")
        if self.stabilization_seconds < 0 or self.idle_cooldown_seconds < 0:
            raise ValueError("windows must be >= 0")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the probes and the registry saw at ``now``."""

    now: datetime
    queued: int = 0  # ready in the broker
    reserved: int = 0  # delivered to a worker, not started (prefetch) or unacked
    running: int = 0  # executing right now
    live_workers: int = 0  # heartbeat fresh: starting, idle, busy or draining
    busy_workers: int = 0
    service_time_seconds: float | None = None  # measured mean task duration, if known

    @property
    def demand(self) -> int:
        return max(0, self.queued) + max(0, self.reserved) + max(0, self.running)


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy remembers between calls: recent recommendations and last demand seen."""

    recommendations: tuple[tuple[datetime, int], ...] = ()
    last_active_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    recommendation: int  # before stabilization and the busy floor
    reason: str
    state: PolicyState = field(repr=False)

    def direction(self, current: int) -> int:
        """+1 scale up, -1 scale down, 0 hold."""
        return (self.desired > current) - (self.desired < current)


def backlog_per_worker(config: PolicyConfig, service_time_seconds: float | None) -> float:
    """How many messages (queued + in flight) one worker is expected to carry."""
    if (
        config.target_latency_seconds is not None
        and service_time_seconds is not None
        and service_time_seconds > 0
    ):
        per_slot = max(1.0, config.target_latency_seconds / service_time_seconds)
        return config.concurrency * per_slot
    if config.target_backlog_per_worker is not None:
        return config.target_backlog_per_worker
    return float(config.concurrency)


def recommend(config: PolicyConfig, demand: int, service_time_seconds: float | None) -> int:
    """The unstabilized worker count for ``demand``, clamped to ``[0, max_workers]``."""
    if demand <= 0:
        return 0
    per_worker = backlog_per_worker(config, service_time_seconds)
    # A tiny epsilon keeps exact multiples (10 / 2.0) from rounding up through float error.
    raw = math.ceil(demand / per_worker - 1e-9)
    return min(config.max_workers, max(1, raw))


def decide(config: PolicyConfig, observed: Observation, state: PolicyState) -> Decision:
    """The desired number of workers for one queue, and the state to pass next time."""
    now = observed.now
    demand = observed.demand
    current = max(0, observed.live_workers)
    busy = max(0, observed.busy_workers)
    last_active = now if demand > 0 else state.last_active_at
    cooldown = timedelta(seconds=config.idle_cooldown_seconds)
    idle_long = demand == 0 and (last_active is None or now - last_active >= cooldown)

    floor = config.min_workers if idle_long else max(config.min_workers, 1)
    recommendation = max(floor, recommend(config, demand, observed.service_time_seconds))
    recommendation = min(recommendation, config.max_workers)

    window_start = now - timedelta(seconds=config.stabilization_seconds)
    history = tuple((t, n) for t, n in state.recommendations if t > window_start and t <= now)
    history = (*history, (now, recommendation))
    next_state = PolicyState(recommendations=history, last_active_at=last_active)

    if recommendation > current:
        desired, reason = recommendation, f"scale up: demand {demand}"
    elif idle_long:
        # KEDA: after the cooldown the pool goes to its minimum without further stabilization.
        desired = recommendation
        reason = "idle past cooldown" if desired < current else "steady"
    else:
        highest = max(n for _, n in history)
        if highest < current:
            desired, reason = highest, f"scale down: highest recommendation in window {highest}"
        else:
            desired = current
            reason = "stabilizing" if recommendation < current else "steady"

    desired = min(desired, config.max_workers)
    if desired < busy:
        desired, reason = busy, f"{busy} workers are busy; never below them"
    return Decision(desired=desired, recommendation=recommendation, reason=reason, state=next_state)


def simulate(
    config: PolicyConfig,
    start: datetime,
    step_seconds: float,
    demands: list[int],
    state: PolicyState | None = None,
) -> list[Decision]:
    """Run ``decide`` over a demand series, feeding each desired count back as the live count
    (an ideal backend): the tests' and the benchmark's model of the loop."""
    state = state or PolicyState()
    live = config.min_workers
    decisions: list[Decision] = []
    for index, demand in enumerate(demands):
        now = start + timedelta(seconds=index * step_seconds)
        running = min(demand, live * config.concurrency)
        observed = Observation(
            now=now,
            queued=demand - running,
            running=running,
            live_workers=live,
            busy_workers=math.ceil(running / config.concurrency),
        )
        decision = decide(config, observed, state)
        decisions.append(decision)
        state = decision.state
        live = decision.desired
    return decisions


__all__ = [
    "Decision",
    "Observation",
    "PolicyConfig",
    "PolicyState",
    "backlog_per_worker",
    "decide",
    "recommend",
    "simulate",
]
