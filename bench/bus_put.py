"""PutEvents → delivered, end to end on PostgreSQL + Redis with real Celery workers.

Events go in through the service layer in 10-entry PutEvents calls (what the AWS endpoint calls),
each commit followed by the enqueue of its deliveries; one rule routes every event to a
registered handler target. We time from the first put until every delivery is ``succeeded``.

    python bench/bus_put.py [--events 2000] [--workers 2] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import time

from common import REDIS, emit, fresh_postgres, workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
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
        with workers(env, args.workers, "--queues=bus", f"--concurrency={args.concurrency}"):
            time.sleep(4)  # let the workers connect
            started = time.perf_counter()
            put_latencies = []
            for batch in range(args.events // 10):
                entries = [
                    {
                        "Source": "bench.orders",
                        "DetailType": "Order Placed",
                        "Detail": json.dumps({"order": batch * 10 + i, "total": 12.5}),
                    }
                    for i in range(10)
                ]
                t0 = time.perf_counter()
                with database.session() as session:
                    result = put_events(session, entries, scope)
                enqueue_deliveries(settings, result.delivery_ids)
                put_latencies.append(time.perf_counter() - t0)
            put_done = time.perf_counter()
            total = (args.events // 10) * 10
            while True:
                with database.session() as session:
                    done = session.scalar(
                        select(func.count()).where(Delivery.status == "succeeded")
                    )
                if done >= total:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
    put_latencies.sort()
    put_eps = total / (put_done - started)
    delivered_eps = total / elapsed
    print(
        f"{total} events: PutEvents accepted {put_eps:,.0f} events/s "
        f"(p50 {put_latencies[len(put_latencies) // 2] * 1000:.1f} ms per 10-entry call); "
        f"delivered end to end {delivered_eps:,.0f} events/s with {args.workers}x"
        f"{args.concurrency} workers"
    )
    emit(
        {
            "bench": "bus_put",
            "events": total,
            "put_eps": round(put_eps, 1),
            "delivered_eps": round(delivered_eps, 1),
            "put_call_p50_ms": round(put_latencies[len(put_latencies) // 2] * 1000, 2),
            "workers": args.workers,
            "concurrency": args.concurrency,
        }
    )


if __name__ == "__main__":
    main()
