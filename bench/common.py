"""Shared benchmark plumbing: a fresh PostgreSQL database, Redis, and real worker processes."""

from __future__ import annotations

import gc
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES = os.environ.get(
    "SMOKEHOUSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("SMOKEHOUSE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
#: Production mode wants a Fernet key for its secret store (the API will not start without).
SECRET_KEY = "pvx-feUR0P4JuJjLP57-Ny_K10XjFT2UcSQjt7DNENY="
#: An admin access key long and random enough for the start-up check.
ACCESS_KEYS = "AKBENCH:bench-admin-7Hq2Lx9Vc4Rt8Mz3Kp6Wn1:admin"


@contextmanager
def fresh_postgres() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"smokehouse_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from app.db import _databases

        for url in [u for u in _databases if name in u]:
            _databases.pop(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def workers(env: dict[str, str], count: int, *args: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    full = {
        "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
        **os.environ,
        **env,
        "PYTHONPATH": str(ROOT),
        "SMOKEHOUSE_LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", *args],
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _tree(pid: int) -> list[int]:
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [pid, *map(int, children)]


def tree_rss_mb(pid: int, children: bool = True) -> float:
    """Memory of a process and (unless ``children`` is false) its children -- a prefork worker,
    uvicorn and its workers -- in MB: their proportional set sizes (PSS), so pages a fork
    shares are counted once, not per child; 0 once it is gone."""
    total = 0
    for each in _tree(pid) if children else [pid]:
        try:
            with open(f"/proc/{each}/smaps_rollup") as rollup:
                total += next(
                    (int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0
                )
        except OSError:
            continue
    return round(total / 1024, 1)


def _cpu_s(pid: int, reaped: bool = False) -> float:
    """CPU seconds (user + system) of one process, with ``reaped`` those of its finished
    children too; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return used / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds a process and its children have used so far."""
    return sum(_cpu_s(each) for each in _tree(pid))


def postgres_cpu_s() -> float:
    """CPU seconds used so far by PostgreSQL: every live server process, plus the backends that
    already ended (counted in the postmaster's reaped children)."""
    pids = subprocess.run(
        ["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False
    ).stdout.split()
    return sum(_cpu_s(int(pid), reaped=True) for pid in pids)


class PeakRss:
    """Samples the named processes' resident memory (with their children) every ``interval``
    seconds while the load runs; ``peaks`` is each one's highest figure in MB."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids, self.interval = pids, interval
        self.peaks = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks[name], tree_rss_mb(pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def steady_client() -> None:
    """Keep this process's collector from stalling its own clients while they measure.

    A bench process holds everything it imported (boto3, SQLAlchemy, the app): a full
    collection walks all of it, 150-170 ms here, and a load generator paused that long shows
    the pause as the server's latency. Freezing the heap built so far leaves the collector only
    what the measurement itself allocates (what the API and workers do at start-up too).
    """
    gc.collect()
    gc.freeze()


def machine() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def emit(result: dict[str, Any]) -> None:
    """The last line of every benchmark: one JSON object."""
    print(json.dumps({**result, **machine()}), flush=True)
