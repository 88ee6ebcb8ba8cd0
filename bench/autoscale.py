"""Autoscaling end to end: from zero workers, N tasks of known duration, real worker processes.

The real autoscaler loop (``Autoscaler.serve`` with the ``process`` backend) watches a Redis queue
on a fresh PostgreSQL database, starting from zero workers. N messages run a handler that sleeps
D seconds and appends ``start``/``end`` lines (task id, worker id, wall clock) to a file. From those
lines:

* ``first_start_s``: send → the first task starts (wake-up + a cold worker's start);
* ``time_to_max_s``: send → the last of ``max_workers`` distinct workers starts its first task;
* ``drain_s`` against the ideal ``N x D / max_workers`` (``drain_ratio``);
* ``lost`` (sent, never finished) and ``duplicated`` (finished more than once).

Then the same N tasks with one fixed, already running worker (``fixed_worker_drain_s``).

    python bench/autoscale.py --tasks 60 --seconds 1 --max-workers 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from celery import Celery
from common import REDIS, ROOT, emit, fresh_postgres, tree_rss_mb

from app.config import Settings, load_settings
from app.db import get_database
from app.migrate import upgrade
from app.scaling.autoscaler import Autoscaler
from app.scaling.backends.process import HEAD_START_SECONDS, ProcessBackend
from app.scaling.models import ScalingWorker
from app.scaling.settings import load_scaling_settings

HANDLER = "bench-autoscale-sleep"


def worker_env(settings: Settings, pycache: Path | None = None) -> dict[str, str]:
    """The workers' environment. With ``pycache``, bytecode is cached there: this machine's
    environment sets PYTHONDONTWRITEBYTECODE=1, which makes every new worker compile its ~1,200
    modules again (about 2 s of CPU each) — not what an installed system does."""
    env = dict(os.environ)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return {
        **env,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
        "SMOKEHOUSE_DATA_DIR": str(settings.data_dir),
        "SMOKEHOUSE_DATABASE_URL": settings.sqlalchemy_url,
        "SMOKEHOUSE_BROKER_URL": settings.celery_broker_url,
        "SMOKEHOUSE_HANDLER_MODULES": "autoscale_handlers",
        "SMOKEHOUSE_WORKER_CONCURRENCY": "1",
        "SMOKEHOUSE_LOG_LEVEL": "WARNING",
        "SMOKEHOUSE_SCALING_HEARTBEAT_SECONDS": "1",
    }


def send(settings: Settings, queue: str, count: int, seconds: float, marks: Path) -> list[str]:
    celery = producer_app(settings)
    ids = [uuid.uuid4().hex for _ in range(count)]
    payload = {"seconds": seconds, "path": str(marks)}
    with celery.producer_or_acquire() as producer:
        for task_id in ids:
            celery.send_task(
                "scaling.handle",
                args=[HANDLER, payload],
                queue=queue,
                task_id=task_id,
                producer=producer,
            )
    return ids


_celery: dict[str, Celery] = {}


def producer_app(settings: Settings) -> Celery:
    """The producer's Celery app, created once (outside the timed part)."""
    if settings.celery_broker_url not in _celery:
        from workers.celery_app import create_celery

        _celery[settings.celery_broker_url] = create_celery(settings)
    return _celery[settings.celery_broker_url]


def read_marks(marks: Path) -> list[tuple[str, str, str, float]]:
    if not marks.exists():
        return []
    rows = []
    for line in marks.read_text().splitlines():
        what, task_id, worker, at = line.split()
        rows.append((what, task_id, worker, float(at)))
    return rows


def wait_finished(marks: Path, ids: list[str], timeout: float) -> None:
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {t for what, t, _, _ in read_marks(marks) if what == "end"}
        if wanted <= done:
            time.sleep(1.0)  # a moment for any duplicate to show up
            return
        time.sleep(0.1)


def summarize(marks: Path, ids: list[str], sent_at: float, max_workers: int) -> dict[str, Any]:
    rows = read_marks(marks)
    starts = [r for r in rows if r[0] == "start"]
    ends = [r for r in rows if r[0] == "end"]
    first_by_worker: dict[str, float] = {}
    for _, _, worker, at in sorted(starts, key=lambda r: r[3]):
        first_by_worker.setdefault(worker, at)
    firsts = sorted(first_by_worker.values())
    finished = Counter(t for _, t, _, _ in ends)
    return {
        "first_start_s": round(min(r[3] for r in starts) - sent_at, 2) if starts else None,
        "time_to_max_s": (
            round(firsts[max_workers - 1] - sent_at, 2) if len(firsts) >= max_workers else None
        ),
        "drain_s": round(max(r[3] for r in ends) - sent_at, 2) if ends else None,
        "workers_used": len(first_by_worker),
        "lost": sum(1 for t in ids if t not in finished),
        "duplicated": sum(n - 1 for t, n in finished.items() if t in set(ids) and n > 1),
    }


def autoscaled(settings: Settings, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    queue = f"bench-autoscale-{uuid.uuid4().hex[:8]}"
    scaling = load_scaling_settings(
        backend="process",
        queues=queue,
        min_workers=0,
        max_workers=args.max_workers,
        interval_seconds=args.interval,
        idle_cooldown_seconds=300,
        stabilization_seconds=300,
    )
    backend = ProcessBackend(
        concurrency=1,
        env=worker_env(settings, args.pycache),
        log_dir=work / "logs-autoscaled",
        head_start_seconds=args.head_start,
        zygote=not args.no_zygote,
    )
    autoscaler = Autoscaler(settings, scaling, backend, publish=False)
    stop = threading.Event()
    loop = threading.Thread(
        target=autoscaler.serve, args=(stop, args.wake_check), name="autoscaler", daemon=True
    )
    loop.start()
    marks = work / "autoscaled.marks"
    try:
        time.sleep(1.5)  # a few idle passes: the pool is at zero, the loop is waiting
        assert not backend.running, "the pool should start at zero"
        sent_at = time.time()
        ids = send(settings, queue, args.tasks, args.seconds, marks)
        sent_s = time.time() - sent_at
        wait_finished(marks, ids, timeout=args.tasks * args.seconds + 120)
        result = summarize(marks, ids, sent_at, args.max_workers)
        result["send_s"] = round(sent_s, 3)
        # memory (PSS) of each process measured: the zygote, and each worker with its pool
        workers = [p.pid for p in backend.children.values()] + list(backend.forked.values())
        sizes = [tree_rss_mb(pid) for pid in workers]
        result["rss_mb"] = {
            "zygote": tree_rss_mb(backend.zygote.pid, children=False) if backend.zygote else None,
            "worker_max": max(sizes, default=None),
            "workers": len(sizes),
        }
        return result
    finally:
        stop.set()
        loop.join(30)
        backend.terminate_all(timeout=30)


def start_idle_worker(settings: Settings, backend: ProcessBackend, queue: str) -> None:
    """Start one worker and wait until the registry reports it idle."""
    database = get_database(settings.sqlalchemy_url)
    started = backend.start_one(queue)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with database.session() as session:
            row = session.get(ScalingWorker, started.id)
            if row is not None and row.state == "idle":
                return
        time.sleep(0.1)
    raise RuntimeError("the worker did not come up within 60 s")


def warm_up(settings: Settings, args: argparse.Namespace, work: Path) -> None:
    """One worker up and down, so the bytecode cache holds every module a worker imports."""
    backend = ProcessBackend(
        concurrency=1, env=worker_env(settings, args.pycache), log_dir=work / "logs-warm"
    )
    try:
        start_idle_worker(settings, backend, f"bench-warm-{uuid.uuid4().hex[:8]}")
    finally:
        backend.terminate_all(timeout=30)


def fixed(settings: Settings, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The same tasks on one worker that is already up (the old `smokehouse run` shape)."""
    queue = f"bench-fixed-{uuid.uuid4().hex[:8]}"
    backend = ProcessBackend(
        concurrency=1, env=worker_env(settings, args.pycache), log_dir=work / "logs-fixed"
    )
    marks = work / "fixed.marks"
    try:
        start_idle_worker(settings, backend, queue)
        sent_at = time.time()
        ids = send(settings, queue, args.tasks, args.seconds, marks)
        wait_finished(marks, ids, timeout=args.tasks * args.seconds * 2 + 60)
        return summarize(marks, ids, sent_at, 1)
    finally:
        backend.terminate_all(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=60, help="N messages")
    parser.add_argument("--seconds", type=float, default=1.0, help="D: each task's duration")
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=10.0, help="autoscaler loop period")
    parser.add_argument("--wake-check", type=float, default=0.25, help="empty→non-empty probe")
    parser.add_argument(
        "--head-start",
        type=float,
        default=HEAD_START_SECONDS,
        help="first worker's head start on a cold start",
    )
    parser.add_argument("--no-fixed", action="store_true", help="skip the one-worker run")
    parser.add_argument(
        "--no-zygote", action="store_true", help="start each worker as a new process (no fork)"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE as set: every worker compiles its modules again",
    )
    args = parser.parse_args()

    with fresh_postgres() as database_url, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        args.pycache = None if args.no_bytecode_cache else work / "pycache"
        settings = load_settings(
            database_url=database_url,
            broker_url=REDIS,
            data_dir=work / "data",
            worker_concurrency=1,
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.sqlalchemy_url)
        ideal = args.tasks * args.seconds / args.max_workers
        producer_app(settings)
        warm_up(settings, args, work)
        scaled = autoscaled(settings, args, work)
        one = None if args.no_fixed else fixed(settings, args, work)

    drain = scaled["drain_s"]
    emit(
        {
            "benchmark": "autoscale",
            "tasks": args.tasks,
            "task_seconds": args.seconds,
            "max_workers": args.max_workers,
            "concurrency": 1,
            "wake_check_s": args.wake_check,
            "interval_s": args.interval,
            "head_start_s": args.head_start,
            "zygote": not args.no_zygote,
            "bytecode_cache": args.pycache is not None,
            **scaled,
            "ideal_drain_s": round(ideal, 2),
            "drain_ratio": round(drain / ideal, 3) if drain is not None else None,
            "fixed_worker_drain_s": one["drain_s"] if one else None,
            "fixed_worker_first_start_s": one["first_start_s"] if one else None,
            "fixed_worker_lost": one["lost"] if one else None,
            "fixed_worker_duplicated": one["duplicated"] if one else None,
        }
    )


if __name__ == "__main__":
    main()
