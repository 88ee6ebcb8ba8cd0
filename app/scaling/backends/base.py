"""The backend interface: start workers for a queue, stop idle ones. Small on purpose.

The autoscaler hands a backend the desired count and a snapshot of the queue's live workers from
the registry; the backend decides *which* workers go (``plan``: only idle ones, newest first, so
a busy worker is never stopped) and carries it out. It returns what it started and what it asked
to stop (warm shutdown: they drain and leave).

**Recorded before started.** A backend that starts a worker under an id of its choosing calls
``record(id)`` first; the autoscaler commits a ``starting`` row for it (and checks it still holds
the queue's lease) before the process or container exists. A crash between the two leaves a row
that never heartbeats (reaped), never a worker nobody knows about; a lost lease raises and
nothing starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

#: Called with a new worker's id before the backend starts it (see the module docstring).
Recorder = Callable[[str], None]


def no_record(worker_id: str) -> None:
    """The recorder of callers that keep no registry (tests, tools)."""


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

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        """Move ``queue``'s pool towards ``desired`` workers, calling ``record(id)`` before
        starting each one."""
        ...

    def close(self) -> None:
        """Release clients; workers keep running."""
        ...


class NoBackend:
    """Decide and record, change nothing (workers are managed elsewhere, e.g. compose)."""

    name = "none"

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        return ScaleResult(note="no backend: decision recorded only")

    def close(self) -> None:
        return None
