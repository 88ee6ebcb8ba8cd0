"""``smokehouse run``'s process supervisor: start the children, stop them all, leave nothing behind.

Each child gets its own process group, so Ctrl-C reaches only the supervisor, which then stops the
children once and in order: SIGTERM to each child, then SIGKILL to its whole group after a grace
period. Children also ask the kernel to SIGTERM them if the supervisor dies without cleaning up
(PR_SET_PDEATHSIG).
If one child exits on its own, the whole system stops: a half-running control plane helps nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("smokehouse.run")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, children: Sequence[Child], grace_seconds: float = 15.0) -> None:
        self.children = list(children)
        self.grace_seconds = grace_seconds
        self._stopping = False

    def start(self, env: dict[str, str] | None = None) -> None:
        for child in self.children:
            child.process = subprocess.Popen(
                list(child.argv), env=env, process_group=0, preexec_fn=_die_with_parent
            )
            log.debug("started %s", child.name, extra={"pid": child.process.pid})

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def wait(self) -> int:
        """Block until a signal or a child's exit; stop everything; return the exit code."""
        previous = {
            sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        code = 0
        try:
            while not self._stopping:
                for child in self.children:
                    if not child.alive:
                        assert child.process is not None
                        log.error(
                            "%s exited with code %s; stopping everything",
                            child.name,
                            child.process.returncode,
                        )
                        code = 1
                        self._stopping = True
                        break
                time.sleep(0.2)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def stop(self) -> None:
        # Reverse order: API and workers stop before the broker they talk to.
        for child in reversed(self.children):
            if child.alive:
                assert child.process is not None
                child.process.terminate()  # the leader only: it stops its own pool gracefully
        deadline = time.monotonic() + self.grace_seconds
        for child in self.children:
            if child.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            # The group may hold grandchildren (Celery's pool) even after the leader exited.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
