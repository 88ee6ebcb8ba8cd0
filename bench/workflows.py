"""State transitions per second: a 10-state Standard workflow on PostgreSQL + Redis with real
Celery workers, and the same workflow as Express, in-process.

The workflow mixes what real ones do: 3 Task states (the registered ``echo`` handler), a Choice,
a Wait of 0 s and Pass states with Parameters; every run enters all ten. A transition is a state
entered (``*StateEntered`` in the history). Standard executions are started through the service
layer (what StartExecution and the bus target call) from a few threads, as concurrent API
requests would, each start in its own transaction followed by its enqueue; we time from the first
start until every execution has SUCCEEDED. The CPU time the workers, PostgreSQL and the starting
threads spent per execution is printed too: on a shared machine the wall-clock rate varies with
what else runs, the CPU cost does not (much).

The Express run is repeated with the same workflow in JSONata with variables
(``express_jsonata_tps``).

    python bench/workflows.py [--executions 1000] [--workers 2] [--concurrency 2] [--producers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import REDIS, PeakRss, emit, fresh_postgres, tree_rss_mb, workers

ECHO = "arn:aws:states:::smokehouse:task:echo"


def definition() -> dict[str, Any]:
    return {
        "Comment": "10 states, all visited: 3 tasks, a choice, a wait, pass states",
        "StartAt": "Prepare",
        "States": {
            "Prepare": {
                "Type": "Pass",
                "Parameters": {"order.$": "$.order", "total.$": "$.total", "source": "bench"},
                "Next": "Enrich",
            },
            "Enrich": {
                "Type": "Task",
                "Resource": ECHO,
                "ResultPath": "$.enriched",
                "Next": "Route",
            },
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.total", "NumericGreaterThanEquals": 0, "Next": "Size"}],
                "Default": "Done",
            },
            "Size": {"Type": "Pass", "Result": "any", "ResultPath": "$.size", "Next": "Store"},
            "Store": {
                "Type": "Task",
                "Resource": ECHO,
                "Parameters": {"order.$": "$.order", "size.$": "$.size"},
                "ResultPath": "$.stored",
                "Next": "Settle",
            },
            "Settle": {"Type": "Wait", "Seconds": 0, "Next": "Notify"},
            "Notify": {
                "Type": "Task",
                "Resource": ECHO,
                "Parameters": {"message.$": "States.Format('order {} stored', $.order)"},
                "ResultPath": "$.notified",
                "Next": "Summarise",
            },
            "Summarise": {
                "Type": "Pass",
                "Parameters": {"order.$": "$.order", "size.$": "$.size", "note.$": "$.notified"},
                "Next": "Tidy",
            },
            "Tidy": {"Type": "Pass", "ResultPath": "$.tidy", "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }


def jsonata_definition() -> dict[str, Any]:
    """The same ten states written as AWS's console writes them today: JSONata, with variables
    (``Assign``) carrying the order between states instead of the state's input."""
    return {
        "Comment": "definition(), in JSONata with variables",
        "QueryLanguage": "JSONata",
        "StartAt": "Prepare",
        "States": {
            "Prepare": {
                "Type": "Pass",
                "Assign": {"order": "{% $states.input.order %}"},
                "Output": {
                    "order": "{% $states.input.order %}",
                    "total": "{% $states.input.total %}",
                },
                "Next": "Enrich",
            },
            "Enrich": {
                "Type": "Task",
                "Resource": ECHO,
                "Arguments": "{% $states.input %}",
                "Output": "{% $merge([$states.input, {'enriched': $states.result}]) %}",
                "Next": "Route",
            },
            "Route": {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $states.input.total >= 0 %}", "Next": "Size"}],
                "Default": "Done",
            },
            "Size": {"Type": "Pass", "Assign": {"size": "any"}, "Next": "Store"},
            "Store": {
                "Type": "Task",
                "Resource": ECHO,
                "Arguments": {"order": "{% $order %}", "size": "{% $size %}"},
                "Assign": {"stored": "{% $states.result %}"},
                "Next": "Settle",
            },
            "Settle": {"Type": "Wait", "Seconds": 0, "Next": "Notify"},
            "Notify": {
                "Type": "Task",
                "Resource": ECHO,
                "Arguments": {"message": "{% 'order ' & $order & ' stored' %}"},
                "Assign": {"notified": "{% $states.result %}"},
                "Next": "Summarise",
            },
            "Summarise": {
                "Type": "Pass",
                "Output": {
                    "order": "{% $order %}",
                    "size": "{% $size %}",
                    "note": "{% $notified %}",
                },
                "Next": "Tidy",
            },
            "Tidy": {"Type": "Pass", "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }


def cpu_seconds(roots: list[int], postgres: list[int]) -> dict[str, float]:
    """CPU time used so far by the worker process trees, PostgreSQL's backends for this
    database, and this process (starting executions): what the run costs whatever else the
    machine is doing at the time."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick

    def in_tree(pid: int) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
        return False

    times = os.times()
    return {
        "workers": sum(t for pid, t in used.items() if in_tree(pid)),
        "postgres": sum(used.get(pid, 0.0) for pid in postgres),
        "driver": times.user + times.system,
    }


def bench_standard(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select, text

    from app.config import load_settings
    from app.db import get_database, utcnow
    from app.migrate import upgrade
    from app.workflows import dispatch, service
    from app.workflows.models import Execution, ExecutionEvent
    from workers.celery_app import create_celery

    with fresh_postgres() as database_url:
        settings = load_settings(database_url=database_url, broker_url=REDIS, log_level="WARNING")
        upgrade(settings.sqlalchemy_url)
        create_celery(settings).control.purge()
        database = get_database(settings.sqlalchemy_url)
        with database.session() as session:
            machine, _ = service.create_machine(
                session,
                settings,
                name="bench",
                definition=json.dumps(definition()),
                role_arn="arn:aws:iam::000000000000:role/bench",
                now=utcnow(),
            )
            machine_id = machine.id
        env = {
            "SMOKEHOUSE_DATABASE_URL": database_url,
            "SMOKEHOUSE_BROKER_URL": REDIS,
            "SMOKEHOUSE_HANDLER_MODULES": "workers.tasks.workflows",
        }

        def start(i: int) -> None:
            with database.session() as session:
                sm = session.get(service.StateMachine, machine_id)
                assert sm is not None
                started = service.start_execution(
                    session,
                    settings,
                    sm,
                    name=f"run-{i}",
                    input_text=json.dumps({"order": i, "total": i % 200}),
                    now=utcnow(),
                )
            w = started.written
            dispatch.after_commit(settings, started.execution_id, w.tasks, w.timers, w.deliveries)

        def succeeded() -> int:
            with database.session() as session:
                return int(
                    session.scalar(select(func.count()).where(Execution.status == "SUCCEEDED")) or 0
                )

        def backends() -> list[int]:
            with database.session() as session:
                return list(
                    session.scalars(
                        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                    )
                )

        with workers(
            env, args.workers, "--queues=workflows", f"--concurrency={args.concurrency}"
        ) as procs:
            start(-1)  # warm up: the workers are connected once it has finished
            deadline = time.monotonic() + 60
            while succeeded() < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            mine = [p.pid for p in procs]
            cpu_before = cpu_seconds(mine, backends())
            began = time.perf_counter()
            watched = {f"worker_{n}": pid for n, pid in enumerate(mine)}
            with PeakRss({**watched, "starter": os.getpid()}) as rss:
                with ThreadPoolExecutor(args.producers) as pool:  # concurrent StartExecution
                    list(pool.map(start, range(args.executions)))
                started_in = time.perf_counter() - began
                while succeeded() < args.executions + 1:
                    time.sleep(0.05)
            elapsed = time.perf_counter() - began
            cpu_after = cpu_seconds(mine, backends())
        with database.session() as session:
            transitions = session.scalar(
                select(func.count())
                .select_from(ExecutionEvent)
                .join(Execution, Execution.id == ExecutionEvent.execution_id)
                .where(ExecutionEvent.type.like("%StateEntered"), Execution.name != "run--1")
            )
            failed = session.scalar(select(func.count()).where(Execution.status != "SUCCEEDED"))
    assert failed == 0, f"{failed} executions did not succeed"
    cpu = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) * 1000 / args.executions for k in cpu_after}
    return {
        "cpu_ms": cpu,
        "executions": args.executions,
        "transitions": transitions,
        "elapsed": elapsed,
        "started_in": started_in,
        "tps": (transitions or 0) / elapsed,
        "rss_mb": rss.peaks,
    }


def bench_express(runs: int, machine_definition: dict[str, Any]) -> dict[str, Any]:
    from app.config import load_settings
    from app.handlers import load_handler_modules
    from app.workflows import express
    from app.workflows.asl import Start, compile_machine

    load_handler_modules()
    settings = load_settings()
    machine = compile_machine(machine_definition)
    for i in range(50):  # warm up
        express.run(settings, machine, Start({"order": i, "total": i}))
    began = time.perf_counter()
    for i in range(runs):
        result = express.run(settings, machine, Start({"order": i, "total": i % 200}))
        assert result.status == "SUCCEEDED", result
    elapsed = time.perf_counter() - began
    rss = tree_rss_mb(os.getpid(), children=False)
    return {"executions": runs, "elapsed": elapsed, "tps": runs * 10 / elapsed, "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--express", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--producers", type=int, default=4, help="threads starting executions")
    args = parser.parse_args()

    standard = bench_standard(args)
    print(
        f"Standard: {standard['executions']} executions, {standard['transitions']} transitions "
        f"in {standard['elapsed']:.2f} s = {standard['tps']:,.0f} transitions/s "
        f"(started in {standard['started_in']:.2f} s; {args.workers}x{args.concurrency} workers, "
        "PostgreSQL + Redis)"
    )
    cpu = standard["cpu_ms"]
    per_execution = sum(cpu.values())
    ceiling = (os.cpu_count() or 1) * 1000 / per_execution * 10
    print(
        f"          CPU per execution: workers {cpu['workers']:.1f} ms, PostgreSQL "
        f"{cpu['postgres']:.1f} ms, starting it {cpu['driver']:.1f} ms (Redis not counted) — "
        f"{per_execution:.1f} ms: {ceiling:,.0f} transitions/s if these {os.cpu_count()} cores "
        "did nothing else"
    )
    fast = bench_express(args.express, definition())
    print(
        f"Express:  {fast['executions']} executions in {fast['elapsed']:.2f} s = "
        f"{fast['tps']:,.0f} transitions/s (in-process)"
    )
    jsonata = bench_express(args.express, jsonata_definition())
    print(
        f"Express, JSONata with variables: {jsonata['executions']} executions in "
        f"{jsonata['elapsed']:.2f} s = {jsonata['tps']:,.0f} transitions/s (in-process)"
    )
    emit(
        {
            "bench": "workflows",
            "standard_tps": round(standard["tps"], 1),
            "express_tps": round(fast["tps"], 1),
            "express_jsonata_tps": round(jsonata["tps"], 1),
            "standard_executions": standard["executions"],
            "standard_transitions": standard["transitions"],
            "standard_seconds": round(standard["elapsed"], 2),
            "standard_cpu_ms_per_execution": {k: round(v, 2) for k, v in cpu.items()},
            "standard_cpu_bound_tps": round(ceiling, 1),
            "standard_rss_mb": standard["rss_mb"],
            "express_rss_mb": fast["rss_mb"],
            "express_executions": fast["executions"],
            "workers": args.workers,
            "concurrency": args.concurrency,
        }
    )


if __name__ == "__main__":
    main()
