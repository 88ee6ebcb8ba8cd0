"""Workers forked from a pre-imported parent: a burst is ready in a blink, not in a Python boot.

A new ``smokehouse worker`` process spends 1.3-2 s before its first task, nearly all of it
importing ~1,200 modules. The *zygote* pays that once: the process backend starts it next to
the autoscaler, it imports everything a worker runs (the CLI, Celery's worker and prefork pool,
the task modules, the handler modules), freezes that heap out of the cyclic GC and then waits,
blocked on its stdin, costing no CPU. Each worker is one ``fork()`` of it: a new session, the
worker's own environment and log, then the same ``smokehouse worker`` command line runs as it
would in a fresh process -- settings are read there, after the fork, from the worker's
environment, and no connection is opened before it.

Protocol (one JSON object per line): the zygote says ``{"ready": true}`` once imported; the
backend sends ``{"module": "app.cli", "args": [...], "env": {...}, "log": path-or-null}`` (what
``python -m <module> <args>`` would run) and reads back
``{"pid": n}`` (or ``{"error": "..."}``). The zygote ignores SIGCHLD, so the kernel reaps the
workers that exit (no zombies); each worker gets SIGTERM (a warm shutdown) if the zygote dies,
and the zygote if the autoscaler's thread does, so no worker outlives the backend.

    python -m app.scaling.backends.zygote
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1
#: What a worker imports before its first task, beyond the worker app and its task modules:
#: Celery's command line (with its REPL's prompt_toolkit), worker bootsteps and prefork pool,
#: the broker transport and the database driver (found by listing ``sys.modules`` at
#: ``worker_ready`` in a forked worker). A module missing here costs its import in each fork.
PRELOAD = (
    "app.cli",
    "app.migrate",
    "app.leases",
    "app.preflight",
    "celery.apps.worker",
    "celery.bin.celery",
    "celery.bin.worker",
    "celery.worker.consumer",
    "celery.worker.components",
    "celery.worker.strategy",
    "celery.concurrency.prefork",
    "celery.app.control",
    "celery.events.dispatcher",
    "billiard.popen_fork",
    "kombu.pidbox",
    "kombu.transport.redis",
    "encodings.idna",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
)


class ZygoteError(RuntimeError):
    """The zygote is gone or did not answer: start the worker the slow way."""


class Zygote:
    """The backend's side: start the zygote, ask it for workers, stop it."""

    def __init__(self, env: Mapping[str, str], log: Path | None = None) -> None:
        out: int | IO[bytes] = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=out,
            start_new_session=True,
            preexec_fn=_sigterm_with_parent,
        )
        if not isinstance(out, int):
            out.close()
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def _answer(self, timeout: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        readable, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if readable else b""
        if not line:
            raise ZygoteError("the zygote did not answer")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(
        self,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log: Path | None,
        timeout: float = 30.0,
    ) -> int:
        """Fork one worker running ``python -m <module> <args>``; its pid. The first call waits
        for the zygote's imports (as long as one worker's boot would take)."""
        stdin = self.process.stdin
        if not self.alive() or stdin is None:
            raise ZygoteError("the zygote is not running")
        try:
            if not self.ready:
                self.ready = bool(self._answer(timeout).get("ready"))
            request = {
                "module": module,
                "args": list(args),
                "env": dict(env),
                "log": str(log) if log else None,
            }
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
            answer = self._answer(5.0)
        except (OSError, ValueError) as exc:
            raise ZygoteError(f"the zygote failed: {exc}") from exc
        if "pid" not in answer:
            raise ZygoteError(str(answer.get("error", answer)))
        return int(answer["pid"])

    def runs(self, pid: int) -> bool:
        """Whether ``pid`` is a live worker this zygote forked (pids are reused)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return False
        return stat[0] != "Z" and int(stat[1]) == self.pid

    def close(self) -> None:
        """EOF on its stdin: the zygote exits (workers it forked stop warm, by PDEATHSIG)."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _sigterm_with_parent() -> None:
    """SIGTERM when the parent (the thread that started us) dies: never an orphan."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _preload() -> None:
    for module in PRELOAD:
        with contextlib.suppress(ImportError):  # an optional driver: the fork imports it
            importlib.import_module(module)
    from app.broker.celery import TASK_MODULES, load_worker_app

    load_worker_app()  # the worker app, its signal hooks and the handler modules
    for module in TASK_MODULES:  # Celery would import these only as the worker starts
        importlib.import_module(module)
    from sqlalchemy.orm import configure_mappers

    configure_mappers()  # else the first query of each fork sets up every mapper (~70 ms)
    gc.collect()
    gc.freeze()  # the imported heap stays shared with every fork (copy-on-write)


def _run_worker(request: dict[str, Any]) -> None:
    """In the forked child: become the worker the request describes; never returns."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # Celery's pool waits for its children
        _sigterm_with_parent()
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["log"] or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["module"], *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our workers
    _preload()
    replies = sys.stdout
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            pid = os.fork()
        except (OSError, ValueError) as exc:
            replies.write(json.dumps({"error": str(exc)}) + "\n")
            replies.flush()
            continue
        if pid == 0:
            _run_worker(request)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
