"""Two real ``smokehouse scheduler`` processes: exactly one sends the periodic tasks, and when it
is killed (-9) the other takes over within two of the shortest interval (workflows.sweep, 5 s).

Before the leased beat both sent every task: two schedulers meant every sweep, reconcile and
autoscaler pass twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli import cli_env, run_cli, smokehouse_argv

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2.0
SHORTEST_INTERVAL = 5.0  # workflows.sweep
SENDING = "Sending due task"


def sends(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if SENDING in line]


def wait_for(check: object, timeout: float) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    settings = {"data_dir": tmp_path / "data", "scheduler_lease_seconds": LEASE_SECONDS}
    migrated = run_cli("migrate", cwd=tmp_path, **settings)
    assert migrated.returncode == 0, migrated.stderr
    started = []
    for name in ("a", "b"):
        log = tmp_path / f"scheduler-{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                smokehouse_argv("scheduler"),
                cwd=tmp_path,
                env=cli_env(**settings),
                stdout=out,
                stderr=out,
            )
        started.append((process, log))
    yield started
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.slow
def test_one_scheduler_acts_and_the_other_takes_over(
    schedulers: list[tuple[subprocess.Popen[bytes], Path]],
) -> None:
    (a, log_a), (b, log_b) = schedulers
    wait_for(lambda: sends(log_a) or sends(log_b), timeout=30)
    time.sleep(2 * SHORTEST_INTERVAL)  # several rounds of ticks
    sent_a, sent_b = sends(log_a), sends(log_b)
    assert bool(sent_a) != bool(sent_b), (len(sent_a), len(sent_b))  # exactly one acts
    (leader, _leader_log), (_standby, standby_log) = (
        ((a, log_a), (b, log_b)) if sent_a else ((b, log_b), (a, log_a))
    )
    assert "standing by" not in standby_log.read_text()  # never led, never lost

    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(10)
    took = wait_for(lambda: sends(standby_log), timeout=4 * SHORTEST_INTERVAL)
    assert took <= 2 * SHORTEST_INTERVAL, f"the standby sent its first task {took:.1f} s after"
    assert "this scheduler leads" in standby_log.read_text()
