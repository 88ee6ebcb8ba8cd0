"""Local ``smokehouse worker`` processes: the embedded default.

Each worker is started in its own session (so a Ctrl-C aimed at the autoscaler does not hit it),
consuming one queue, with the id the backend chose in ``SMOKEHOUSE_WORKER_ID``. Scale-down sends
SIGTERM — Celery's *warm* shutdown: stop taking messages, finish what runs, exit — and only to
workers the registry reports idle (see ``plan``). A worker of ours that exited is reaped here so no
zombie stays behind; one that died without a goodbye is the registry reaper's business.

A pool named in ``commands`` (``SMOKEHOUSE_SCALING_COMMANDS``) runs a program of yours instead --
the seed's SQS poller -- under ``smokehouse scaling exec`` (:mod:`app.scaling.registered`),
which keeps it in the registry like any worker.

A cold start (no live worker yet, several to start) gives the first worker a head start of
``head_start_seconds`` before the others: a Python worker needs about a second of CPU to boot,
and on two cores four starting together are all ready only after about three. The first message
then waits for one worker's boot, not for four (see ``bench/autoscale.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.scaling.backends.base import Recorder, ScaleResult, Started, WorkerView, no_record, plan

log = logging.getLogger("smokehouse.scaling.process")

PR_SET_PDEATHSIG = 1
HEAD_START_SECONDS = 1.0


class ProcessBackend:
    name = "process"

    def __init__(
        self,
        *,
        concurrency: int,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
        log_dir: Path | None = None,
        head_start_seconds: float = HEAD_START_SECONDS,
        commands: Mapping[str, str] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.head_start_seconds = head_start_seconds
        self.env = dict(env if env is not None else os.environ)
        self.argv = list(argv or [sys.executable, "-m", "app.cli", "worker"])
        self.log_dir = log_dir
        self.commands = {pool: shlex.split(line) for pool, line in (commands or {}).items()}
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def reap_children(self) -> list[str]:
        """Collect exited children (no zombies); return their worker ids."""
        gone = [wid for wid, proc in self.children.items() if proc.poll() is not None]
        for worker_id in gone:
            self.children.pop(worker_id)
        return gone

    def start_one(self, queue: str, record: Recorder = no_record) -> Started:
        worker_id = f"proc-{queue}-{uuid.uuid4().hex[:10]}"
        record(worker_id)
        env = {
            **self.env,
            "SMOKEHOUSE_WORKER_ID": worker_id,
            "SMOKEHOUSE_WORKER_BACKEND": self.name,
        }
        out: int | object = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{worker_id}.log").open("ab")
        process = subprocess.Popen(
            self.command(queue),
            env=env,
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_warm_stop_with_parent,
        )
        if hasattr(out, "close"):
            out.close()
        env_ref = str(process.pid)
        self.children[worker_id] = process
        log.info("started worker %s (pid %s) for %s", worker_id, env_ref, queue)
        return Started(worker_id, env_ref)

    def command(self, pool: str) -> list[str]:
        """``smokehouse worker`` for the pool, or the pool's own program under the shim."""
        if pool in self.commands:
            # the shim is `smokehouse scaling exec`, started as the worker would be
            if self.argv[-1] != "worker":
                raise ValueError(f"cannot derive `scaling exec` from {self.argv!r}")
            shim = [*self.argv[:-1], "scaling", "exec"]
            return [*shim, f"--pool={pool}", "--", *self.commands[pool]]
        return [*self.argv, f"--queues={pool}", f"--concurrency={self.concurrency}"]

    def stop_one(self, worker: WorkerView) -> bool:
        """Warm shutdown by SIGTERM to the worker's main process only (it stops its pool)."""
        process = self.children.get(worker.id)
        pid = process.pid if process is not None else _pid(worker.backend_ref)
        if pid is None or (process is None and not _runs_worker(pid, worker.id)):
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        log.info("asked worker %s (pid %s) to stop", worker.id, pid)
        return True

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        self.reap_children()
        todo = plan(desired, workers, self.name)
        result = ScaleResult()
        cold = not any(w.state != "draining" for w in workers)
        for index in range(todo.start):
            if index == 1 and cold and self.head_start_seconds > 0:
                time.sleep(self.head_start_seconds)  # the first worker boots alone for a moment
            result.started.append(self.start_one(queue, record))
        for worker in todo.stop:
            if self.stop_one(worker):
                result.stopped.append(worker.id)
        return result

    def close(self) -> None:
        self.reap_children()

    def terminate_all(self, timeout: float = 30.0) -> None:
        """Stop every child we started (warm, then hard): for tests and the loop's exit."""
        for process in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout  # one grace period for all, not one each
        for process in self.children.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.children.clear()


def _warm_stop_with_parent() -> None:
    """If the autoscaler dies without stopping us, the kernel sends SIGTERM: a warm shutdown,
    never an orphaned worker (the same guard ``smokehouse run`` gives its children). The kernel
    watches the *thread* that started the worker: run the loop on a thread that lives as long."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _runs_worker(pid: int, worker_id: str) -> bool:
    """Whether ``pid`` still is that worker: a registry row can outlive its process, and the
    kernel reuses pids, so a worker we did not start is signalled only if its environment
    carries its id. Without ``/proc`` (not Linux) the pid is trusted."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    try:
        environ = (proc / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or another user's process: not ours to signal
        return False
    return f"SMOKEHOUSE_WORKER_ID={worker_id}".encode() in environ


def _pid(ref: str | None) -> int | None:
    try:
        return int(ref) if ref else None
    except ValueError:
        return None
