"""PutEvents → delivered, end to end on PostgreSQL + Redis with real Celery workers.

Events go in through the service layer in 10-entry PutEvents calls (what the AWS endpoint calls)
from ``--put-threads`` threads, each commit followed by the enqueue of its deliveries; one rule
routes every event to a registered handler target. We time from the first put until every
delivery is ``succeeded``. While the load runs we sample the memory (PSS) of the putting process
and of each worker (with its prefork children), and count the CPU each of them and PostgreSQL
used per event.

Then the same through HTTP, with ``smokehouse api`` in its own process: PutEvents from boto3
(SigV4, 10-entry calls, ``--put-threads`` client threads; ``http_put_eps``, and ``rss_mb`` of the
API), and deliveries to an API destination on a local keep-alive HTTP endpoint
(``http_delivered_eps``: from the first put until the endpoint received them all).

    python bench/bus_put.py [--events 6000] [--workers 2] [--concurrency 2] [--put-threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import (
    ACCESS_KEYS,
    REDIS,
    ROOT,
    SECRET_KEY,
    PeakRss,
    emit,
    fresh_postgres,
    postgres_cpu_s,
    tree_cpu_s,
    workers,
)

KEY_ID, KEY_SECRET = ACCESS_KEYS.split(":")[:2]


class Sink(BaseHTTPRequestHandler):
    """The API destination's endpoint: HTTP/1.1 keep-alive, counts what it received."""

    protocol_version = "HTTP/1.1"
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with Sink.lock:
            Sink.received += 1

    def log_message(self, *_: Any) -> None:
        return None


class SinkServer(ThreadingHTTPServer):
    request_queue_size = 256  # listen()'s backlog: the default 5 reset a batch's burst
    daemon_threads = True


def entries(source: str, first: int) -> list[dict[str, Any]]:
    return [
        {
            "Source": source,
            "DetailType": "Order Placed",
            "Detail": json.dumps({"order": first + i, "total": 12.5}),
        }
        for i in range(10)
    ]


def http_phases(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """PutEvents over HTTP (boto3), then deliveries to a local keep-alive HTTP endpoint."""
    import boto3
    from botocore.config import Config
    from sqlalchemy import func, select

    from app.bus.models import Delivery
    from app.db import get_database
    from tests.services import free_port, wait_for

    port = free_port()
    sink = SinkServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SMOKEHOUSE_DATABASE_URL": database_url,
        "SMOKEHOUSE_BROKER_URL": REDIS,
        "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
        "SMOKEHOUSE_ACCESS_KEYS": ACCESS_KEYS,
        "SMOKEHOUSE_HTTP_PORT": str(port),
        "SMOKEHOUSE_LOG_LEVEL": "WARNING",
        "SMOKEHOUSE_EGRESS_ALLOW": "127.0.0.1",
    }
    database = get_database(database_url)
    calls = args.events // 10
    with tempfile.TemporaryDirectory() as tmp:
        env["SMOKEHOUSE_DATA_DIR"] = tmp
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--no-migrate"],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=(Path(tmp) / "api.log").open("wb"),
        )
        try:
            client = boto3.client(
                "events",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=KEY_SECRET,
                config=Config(max_pool_connections=args.put_threads * 2),
            )
            wait_for(lambda: _answers(client), 60, what="the API")
            with workers(env, args.workers, "--queues=bus", f"--concurrency={args.concurrency}"):
                time.sleep(4)

                def put(thread: int, source: str) -> None:
                    for call in range(thread, calls, args.put_threads):
                        answer = client.put_events(Entries=entries(source, call * 10))
                        assert answer["FailedEntryCount"] == 0, answer

                def put_all(source: str) -> float:
                    threads = [
                        threading.Thread(target=put, args=(n, source))
                        for n in range(args.put_threads)
                    ]
                    started = time.perf_counter()
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    return started

                def delivered() -> int:
                    with database.session() as session:
                        return int(
                            session.scalar(
                                select(func.count()).where(Delivery.status == "succeeded")
                            )
                            or 0
                        )

                base = delivered()
                with PeakRss({"api": api.pid}) as rss:
                    started = put_all("bench.orders")
                    http_put_s = time.perf_counter() - started
                before = calls * 10
                wait_for(lambda: delivered() >= base + before, 300, what="the HTTP puts delivered")

                connection = client.create_connection(
                    Name="sink",
                    AuthorizationType="API_KEY",
                    AuthParameters={
                        "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k" * 24}
                    },
                )
                destination = client.create_api_destination(
                    Name="sink",
                    ConnectionArn=connection["ConnectionArn"],
                    InvocationEndpoint=f"http://127.0.0.1:{sink.server_port}/hook",
                    HttpMethod="POST",
                    InvocationRateLimitPerSecond=10_000,
                )
                client.put_rule(Name="to-sink", EventPattern=json.dumps({"source": ["bench.http"]}))
                client.put_targets(
                    Rule="to-sink",
                    Targets=[{"Id": "sink", "Arn": destination["ApiDestinationArn"]}],
                )
                started = put_all("bench.http")
                wait_for(lambda: Sink.received >= before, 300, what="the endpoint to get them")
                http_delivered_s = time.perf_counter() - started
        finally:
            api.terminate()
            api.wait(30)
            sink.shutdown()
    return {
        "http_put_eps": round(before / http_put_s, 1),
        "http_delivered_eps": round(before / http_delivered_s, 1),
        "api_rss_mb": rss.peaks["api"],
    }


def _answers(client: Any) -> bool:
    try:
        client.list_event_buses()
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--put-threads", type=int, default=4)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP phases")
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
        http = {} if args.no_http else http_phases(database_url, args)
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
            **http,
            # CPU per event, by process (ms): where the two cores went
            "cpu_ms_per_event": {n: round(used * 1000 / total, 3) for n, used in cpu.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    )


if __name__ == "__main__":
    main()
