"""A program of yours as a registered worker: ``smokehouse scaling exec --pool P -- CMD …``.

The autoscaler stops only workers the registry knows, and restores what a silent one held. A
plain program -- the seed's boto3 SQS poller -- knows nothing of either, so the process backend
starts it under this shim, which registers under the id the backend chose, runs the program as
its child, heartbeats for it while it lives, and says goodbye when it exits.

The shim cannot see inside the program, so it reports it ``idle``: a scale-down may pick it.
The contract is the one SQS consumers already keep: SIGTERM (forwarded to the program) means
"finish the message in hand, take no more, exit"; a message it could not finish comes back after
its visibility timeout (at least once). Nothing is held in the broker, so a shim that dies
leaves nothing for the reaper to restore; the kernel stops the program with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import threading
from collections.abc import Sequence
from types import FrameType

from app.config import Settings
from app.db import get_database, utcnow
from app.scaling import registry

log = logging.getLogger("smokehouse.scaling.exec")

PR_SET_PDEATHSIG = 1


def run_registered(settings: Settings, pool: str, argv: Sequence[str]) -> int:
    """Run ``argv`` as a worker of ``pool`` until it exits; its exit status."""
    info = registry.WorkerInfo.of(settings.worker, [pool], 1)
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        registry.register(session, info, utcnow())
    child = subprocess.Popen(list(argv), preexec_fn=_die_with_parent)
    draining = threading.Event()

    def beat() -> None:
        state = "draining" if draining.is_set() else "idle"
        try:
            with database.session() as session:
                registry.heartbeat(session, info, registry.Heartbeat(state=state), utcnow())
        except Exception as error:  # the program keeps working; the next beat may succeed
            log.warning("heartbeat failed: %s", error)

    def stop(signum: int, _frame: FrameType | None) -> None:
        draining.set()
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker %s of pool %s runs %s (pid %s)", info.id, pool, argv[0], child.pid)
    beat()
    while True:
        try:
            code = child.wait(settings.scaling.heartbeat_seconds)
            break
        except subprocess.TimeoutExpired:
            beat()
    with contextlib.suppress(Exception), database.session() as session:
        registry.mark_stopped(session, info.id, utcnow())
    log.info("worker %s exited with %s", info.id, code)
    return code


def _die_with_parent() -> None:
    """If the shim is killed outright, the kernel sends the program SIGTERM: no orphan."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
