"""Local ``smokehouse worker`` processes: the embedded default.

Each worker is started in its own session (so a Ctrl-C aimed at the autoscaler does not hit it),
consuming one queue, with the id the backend chose in ``SMOKEHOUSE_WORKER_ID``. Scale-down sends
SIGTERM — Celery's *warm* shutdown: stop taking messages, finish what runs, exit — and only to
workers the registry reports idle (see ``plan``). A worker of ours that exited is reaped here so no
zombie stays behind; one that died without a goodbye is the registry reaper's business.

A pool named in ``commands`` (``SMOKEHOUSE_SCALING_COMMANDS``) runs a program of yours instead --
the seed's SQS poller -- under ``smokehouse scaling exec`` (:mod:`app.scaling.registered`),
which keeps it in the registry like any worker.

Workers are forked from a *zygote* (:mod:`app.scaling.backends.zygote`): a parent that
imported everything a worker runs when the backend was made, so a burst of workers is ready in a
fraction of a second instead of paying a Python boot each. When the zygote is unavailable (a
custom ``argv``, a pool's own program, a zygote that died) a worker is started the slow way, as
a new process; then a cold start (no live worker yet, several to start) gives the first worker a
head start of ``head_start_seconds`` before the others: a Python worker needs about a second of
CPU to boot, and on two cores four starting together are all ready only after about three.
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
from app.scaling.backends.zygote import Zygote, ZygoteError

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
        zygote: bool | None = None,
    ) -> None:
        """``zygote``: fork workers from a pre-imported parent (default: yes, unless ``argv``
        names a command of its own, which the zygote cannot run)."""
        self.concurrency = concurrency
        self.head_start_seconds = head_start_seconds
        self.env = dict(env if env is not None else os.environ)
        self.argv = list(argv or [sys.executable, "-m", "app.cli", "worker"])
        self.log_dir = log_dir
        self.commands = {pool: shlex.split(line) for pool, line in (commands or {}).items()}
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        #: Workers the zygote forked: worker id -> pid (the zygote reaps them).
        self.forked: dict[str, int] = {}
        self.zygote: Zygote | None = None
        forkable = self.argv[:2] == [sys.executable, "-m"] and len(self.argv) > 2
        if forkable and (zygote if zygote is not None else argv is None):
            self.zygote = Zygote(self.env, log_dir / "zygote.log" if log_dir else None)

    def reap_children(self) -> list[str]:
        """Collect exited children (no zombies); return their worker ids."""
        gone = [wid for wid, proc in self.children.items() if proc.poll() is not None]
        for worker_id in gone:
            self.children.pop(worker_id)
        exited = [wid for wid, pid in self.forked.items() if not self._forked_alive(pid)]
        for worker_id in exited:
            self.forked.pop(worker_id)
        return gone + exited

    def _forked_alive(self, pid: int) -> bool:
        return self.zygote is not None and self.zygote.runs(pid)

    @property
    def running(self) -> int:
        """Workers of ours that have not exited yet (started either way)."""
        self.reap_children()
        return len(self.children) + len(self.forked)

    def start_one(self, queue: str, record: Recorder = no_record) -> Started:
        worker_id = f"proc-{queue}-{uuid.uuid4().hex[:10]}"
        record(worker_id)
        env = {
            **self.env,
            "SMOKEHOUSE_WORKER_ID": worker_id,
            "SMOKEHOUSE_WORKER_BACKEND": self.name,
        }
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{worker_id}.log"
        if self.zygote is not None and queue not in self.commands:
            module, args = self.argv[2], self.command(queue)[3:]  # python -m <module> <args>
            try:
                pid = self.zygote.spawn(module, args, env, log_path)
            except ZygoteError as exc:
                log.warning("zygote unavailable (%s): starting %s as a new process", exc, worker_id)
                self.zygote.close()
                self.zygote = None
            else:
                self.forked[worker_id] = pid
                log.info("forked worker %s (pid %s) for %s", worker_id, pid, queue)
                return Started(worker_id, str(pid))
        out: int | object = subprocess.DEVNULL
        if log_path is not None:
            out = log_path.open("ab")
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
        ours = process is not None or (
            worker.id in self.forked and self._forked_alive(self.forked[worker.id])
        )
        if pid is None or (not ours and not _runs_worker(pid, worker.id)):
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
        cold = not any(w.state != "draining" for w in workers) and self.zygote is None
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
        """Stop every worker we started (warm, then hard) and the zygote: for tests and the
        loop's exit."""
        for process in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for pid in self.forked.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout  # one grace period for all, not one each
        for process in self.children.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        while self.forked and time.monotonic() < deadline:
            self.reap_children()
            time.sleep(0.05)
        for pid in self.forked.values():  # each worker leads its own session: its pool too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.children.clear()
        self.forked.clear()
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


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
