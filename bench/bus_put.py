"""PutEvents → delivered, end to end on PostgreSQL + Redis with real Celery workers.

Events go in through the service layer in 10-entry PutEvents calls (what the AWS endpoint calls)
from ``--put-threads`` threads, each commit followed by the enqueue of its deliveries; one rule
routes every event to a registered handler target. We time from the first put until every
delivery is ``succeeded``. While the load runs we sample the memory (PSS) of the putting process
and of each worker (with its prefork children), and count the CPU each of them and PostgreSQL
used per event.

    python bench/bus_put.py [--events 6000] [--workers 2] [--concurrency 2] [--put-threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from common import REDIS, PeakRss, emit, fresh_postgres, postgres_cpu_s, tree_cpu_s, workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--put-threads", type=int, default=4)
    args = parser.parse_args()

    from sqlalchemy import func, select

    from app.bus import service
    from app.bus.arns import Scope
    from app.bus.events import put_events
    from app.bus.models import Delivery
    from app.bus.outbox import enqueue_deliveries
    from app.config import load_settings
    from app.db import get_database
    from app.migrate import upgrade
    from workers.celery_app import create_celery

    with fresh_postgres() as database_url:
        settings = load_settings(database_url=database_url, broker_url=REDIS, log_level="WARNING")
        upgrade(settings.sqlalchemy_url)
        create_celery(settings).control.purge()
        database = get_database(settings.sqlalchemy_url)
        with database.session() as session:
            service.put_rule(session, name="all-orders", event_pattern={"source": ["bench.orders"]})
            service.put_targets(
                session, None, "all-orders", [{"Id": "echo", "Arn": "arn:smokehouse:handler:echo"}]
            )
        scope = Scope(settings.region, settings.account_id)
        env = {"SMOKEHOUSE_DATABASE_URL": database_url, "SMOKEHOUSE_BROKER_URL": REDIS}
        calls = args.events // 10
        total = calls * 10
        latencies: list[float] = []

        def put(thread: int) -> None:
            for call in range(thread, calls, args.put_threads):
                entries = [
                    {
                        "Source": "bench.orders",
                        "DetailType": "Order Placed",
                        "Detail": json.dumps({"order": call * 10 + i, "total": 12.5}),
                    }
                    for i in range(10)
                ]
                t0 = time.perf_counter()
                with database.session() as session:
                    result = put_events(session, entries, scope)
                enqueue_deliveries(settings, result.delivery_ids)
                latencies.append(time.perf_counter() - t0)

        with workers(
            env, args.workers, "--queues=bus", f"--concurrency={args.concurrency}"
        ) as procs:
            time.sleep(4)  # let the workers connect
            watched = {"putter": os.getpid()} | {f"worker{n}": p.pid for n, p in enumerate(procs)}
            cpu_before = {n: tree_cpu_s(pid) for n, pid in watched.items()}
            cpu_before["postgresql"] = postgres_cpu_s()
            with PeakRss(watched) as rss:
                started = time.perf_counter()
                threads = [threading.Thread(target=put, args=(n,)) for n in range(args.put_threads)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                put_done = time.perf_counter()
                while True:
                    with database.session() as session:
                        done = session.scalar(
                            select(func.count()).where(Delivery.status == "succeeded")
                        )
                    if done >= total:
                        break
                    time.sleep(0.02)
                elapsed = time.perf_counter() - started
            cpu = {n: tree_cpu_s(pid) - cpu_before[n] for n, pid in watched.items()}
            cpu["postgresql"] = postgres_cpu_s() - cpu_before["postgresql"]
    latencies.sort()
    put_eps = total / (put_done - started)
    delivered_eps = total / elapsed
    p50_ms = latencies[len(latencies) // 2] * 1000
    print(
        f"{total} events: PutEvents accepted {put_eps:,.0f} events/s (p50 {p50_ms:.1f} ms per "
        f"10-entry call, {args.put_threads} threads); delivered end to end {delivered_eps:,.0f} "
        f"events/s with {args.workers}x{args.concurrency} workers; peak RSS {rss.peaks} MB"
    )
    emit(
        {
            "bench": "bus_put",
            "events": total,
            "put_eps": round(put_eps, 1),
            "delivered_eps": round(delivered_eps, 1),
            "put_call_p50_ms": round(p50_ms, 2),
            "put_threads": args.put_threads,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "rss_mb": rss.peaks,
            # CPU per event, by process (ms): where the two cores went
            "cpu_ms_per_event": {n: round(used * 1000 / total, 3) for n, used in cpu.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    )


if __name__ == "__main__":
    main()
