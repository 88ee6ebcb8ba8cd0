"""Shared benchmark plumbing: a fresh PostgreSQL database, Redis, and real worker processes."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
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


def machine() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def emit(result: dict[str, Any]) -> None:
    """The last line of every benchmark: one JSON object."""
    print(json.dumps({**result, **machine()}), flush=True)
