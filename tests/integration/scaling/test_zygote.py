"""Workers forked from the zygote (issue 14: a burst ready in a blink): each fork runs with its
own environment and arguments, a worker stops warm when the zygote dies (never an orphan), and a
backend whose zygote is gone starts workers the slow way instead of failing."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from app.scaling.backends.process import ProcessBackend
from app.scaling.backends.zygote import Zygote
from tests.services import wait_for

pytestmark = pytest.mark.integration

CHILD = "tests.integration.scaling.zygote_child"


def env(mark: str, out: Path) -> dict[str, str]:
    return {**os.environ, "MARK": mark, "MARK_FILE": str(out)}


def test_each_fork_gets_its_own_environment_and_arguments(tmp_path: Path) -> None:
    zygote = Zygote(dict(os.environ), tmp_path / "zygote.log")
    try:
        outs = [tmp_path / f"child{n}.txt" for n in range(2)]
        pids = [
            zygote.spawn(CHILD, ["--queue", f"q{n}"], env(f"m{n}", out), None)
            for n, out in enumerate(outs)
        ]
        for out in outs:
            wait_for(lambda o=out: o.exists() and o.read_text(), 10, what="the forks to start")
        assert [out.read_text().split() for out in outs] == [
            [f"m{n}", "--queue", f"q{n}", str(pid)] for n, pid in enumerate(pids)
        ]
        assert all(zygote.runs(pid) for pid in pids)
        os.kill(pids[0], signal.SIGTERM)
        wait_for(lambda: not zygote.runs(pids[0]), 10, what="the first fork to exit")
        assert outs[0].read_text().endswith("stopped\n")  # it stopped warm, and was reaped
        assert zygote.runs(pids[1])
    finally:
        zygote.close()


def test_a_worker_stops_warm_when_its_zygote_dies(tmp_path: Path) -> None:
    zygote = Zygote(dict(os.environ))
    out = tmp_path / "child.txt"
    pid = zygote.spawn(CHILD, [], env("orphan?", out), None)
    wait_for(lambda: out.exists() and out.read_text(), 10, what="the fork to start")
    zygote.process.kill()
    zygote.process.wait(5)
    wait_for(lambda: "stopped" in out.read_text(), 10, what="the fork to get SIGTERM")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, what="the fork to exit")
    zygote.close()


def test_a_backend_whose_zygote_died_starts_workers_as_new_processes(tmp_path: Path) -> None:
    backend = ProcessBackend(
        concurrency=1,
        env=env("slow-way", tmp_path / "child.txt"),
        argv=[sys.executable, "-m", CHILD],
        zygote=True,
    )
    try:
        assert backend.zygote is not None
        backend.zygote.process.kill()
        backend.zygote.process.wait(5)
        started = backend.start_one("q")
        assert backend.zygote is None
        assert started.id in backend.children  # a new process, not a fork
        wait_for(lambda: (tmp_path / "child.txt").exists(), 10, what="the worker to start")
        assert backend.running == 1
    finally:
        backend.terminate_all(timeout=10)
    assert backend.running == 0
