"""Keep the claims of running tasks fresh while their worker lives.

A claim expires ``workflow_task_lease_seconds`` after it was last renewed; the sweeper then
sends the task again. One thread per process renews every claim it holds a few times per lease,
in one UPDATE, so a long handler is not run twice while a killed worker's task is retried within
one lease instead of after an hour of broker visibility timeout.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from sqlalchemy import tuple_, update

from app.db import get_database, utcnow
from app.workflows.models import ExecutionTask

log = logging.getLogger("smokehouse.workflows")


class LeaseKeeper:
    def __init__(self) -> None:
        self._held: dict[tuple[str, float], set[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = -1

    def hold(self, url: str, lease: float, execution_id: int, ref: str) -> None:
        with self._lock:
            self._held.setdefault((url, lease), set()).add((execution_id, ref))
            if self._pid != os.getpid():  # first use in this (possibly forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="lease-keeper", daemon=True).start()

    def release(self, url: str, lease: float, execution_id: int, ref: str) -> None:
        with self._lock:
            held = self._held.get((url, lease))
            if held is not None:
                held.discard((execution_id, ref))

    def _run(self) -> None:
        period = 0.2
        while True:
            self._wake.wait(period)
            with self._lock:
                snapshot = {key: set(refs) for key, refs in self._held.items() if refs}
            period = max(min((lease for _, lease in snapshot), default=3.0) / 3, 0.2)
            for (url, lease), refs in snapshot.items():
                try:
                    self._renew(url, lease, refs)
                except Exception as exc:  # the next round tries again
                    log.warning("could not renew %d task claims: %s", len(refs), exc)

    @staticmethod
    def _renew(url: str, lease: float, refs: set[tuple[int, str]]) -> None:
        with get_database(url).session() as session:
            session.execute(
                update(ExecutionTask)
                .where(
                    tuple_(ExecutionTask.execution_id, ExecutionTask.ref).in_(sorted(refs)),
                    ExecutionTask.status == "running",
                )
                .values(claimed_until=utcnow() + timedelta(seconds=lease))
            )


keeper = LeaseKeeper()
