"""Start real ``smokehouse worker`` processes with the registry hooks loaded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from tests.integration.cli import cli_env

# The hooks module is imported before the CLI so its signal handlers are connected in the worker.
BOOT = (
    "import sys; import workers.registry_hooks, workers.tasks.queues; "
    "from app.cli import main; sys.argv[0] = 'smokehouse'; main()"
)
FAST = {"SMOKEHOUSE_SCALING_HEARTBEAT_SECONDS": "0.3"}


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = cli_env(
        data_dir=settings.data_dir,
        database_url=settings.database_url or "",
        broker_url=settings.broker_url or "",
        log_format="console",
        handler_modules="tests.integration.scaling.handlers",
        queues_max_receive_counts=settings.queues.max_receive_counts,
    )
    env = {k: v for k, v in env.items() if v != ""}
    return {**env, **FAST, **extra}


def worker_argv() -> list[str]:
    return [sys.executable, "-c", BOOT, "worker"]


def start_worker(
    settings: Settings, worker_id: str, queue: str, log_dir: Path, concurrency: int = 1
) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{worker_id}.log").open("wb")
    return subprocess.Popen(
        [*worker_argv(), f"--queues={queue}", f"--concurrency={concurrency}"],
        env=worker_env(settings, SMOKEHOUSE_WORKER_ID=worker_id),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_hard(process)
            raise AssertionError("worker did not stop within its grace period") from None
    kill_hard(process)  # the group may still hold pool children
