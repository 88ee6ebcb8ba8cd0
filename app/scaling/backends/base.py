"""The backend interface: start workers for a queue, stop idle ones. Small on purpose.

The autoscaler hands a backend the desired count and a snapshot of the queue's live workers from
the registry; the backend decides *which* workers go (``plan``: only idle ones, newest first, so
a busy worker is never stopped) and carries it out. It returns what it started (ids it chose, so
the autoscaler can pre-register them as ``starting`` and not start them twice) and what it asked
to stop (warm shutdown: they drain and leave).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What a backend needs to know about one live worker."""

    id: str
    state: str
    active: int
    started_at: datetime
    backend: str
    backend_ref: str | None = None

    @property
    def idle(self) -> bool:
        return self.state == "idle" and self.active == 0


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    backend_ref: str | None


@dataclass
class ScaleResult:
    started: list[Started] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    start: int
    stop: tuple[WorkerView, ...]


def plan(desired: int, workers: Sequence[WorkerView], backend: str) -> Plan:
    """How many to start, and which idle workers (of this backend) to stop.

    Draining workers are already leaving and count for nothing. Scale-down takes only idle
    workers, newest first; if too few are idle, fewer stop now and the next pass tries again.
    """
    current = [w for w in workers if w.state != "draining"]
    if desired >= len(current):
        return Plan(start=desired - len(current), stop=())
    idle = sorted(
        (w for w in current if w.idle and w.backend == backend),
        key=lambda w: (w.started_at, w.id),
        reverse=True,
    )
    return Plan(start=0, stop=tuple(idle[: len(current) - desired]))


class Backend(Protocol):
    name: str

    def scale(self, queue: str, desired: int, workers: Sequence[WorkerView]) -> ScaleResult:
        """Move ``queue``'s pool towards ``desired`` workers."""
        ...

    def close(self) -> None:
        """Release clients; workers keep running."""
        ...


class NoBackend:
    """Decide and record, change nothing (workers are managed elsewhere, e.g. compose)."""

    name = "none"

    def scale(self, queue: str, desired: int, workers: Sequence[WorkerView]) -> ScaleResult:
        return ScaleResult(note="no backend: decision recorded only")

    def close(self) -> None:
        return None
