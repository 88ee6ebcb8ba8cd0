"""The dashboard's two hot paths through the real GraphQL endpoint, on PostgreSQL + Redis.

1. **Downsampling**: a 12-hour cook, 4 probes at 1 Hz (172,800 readings, COPYed into
   ``iot_readings``, the 10 s rollup rebuilt from them), asked for as 1,000 points per probe
   (``readings(maxPoints: 1000)``: 864 buckets of 50 s) over HTTP. ``downsample_p50_ms`` is
   the dashboard's query (``columns``: parallel arrays); ``downsample_points_p50_ms`` the same
   series as one object per bucket. Target: p50 ≤ 50 ms.
2. **Fan-out**: 100 WebSocket clients subscribed to ``readings(deviceId)``; messages published
   with ``app.realtime.publish`` (Redis pub/sub), latency from publish to each client's receipt
   (same process, same clock).

The API runs as its own uvicorn process (as in production), so the clients here do not share
its interpreter.

    python bench/graphql.py [--queries 60] [--subscribers 100] [--messages 30]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import REDIS, ROOT, SECRET_KEY, PeakRss, emit, fresh_postgres, steady_client

# This file is named like the graphql-core package: with bench/ first on sys.path (as when run
# as `python bench/graphql.py`), strawberry's `import graphql` would find it instead.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]

from app.auth import AccessKey, issue_session  # noqa: E402  (after the sys.path fix)

DEVICE = "bench-pit"
PROBES = ("pit", "brisket", "ribs", "ambient")
HOURS = 12
SECRET = "bench-viewer-5Kq9Wz2Tx7Mc4Lp8"
TOKEN = issue_session(AccessKey("AKBENCH", SECRET, "viewer"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_cook(database_url: str, start: datetime) -> int:
    """Device, probes, one cook and 12 h x 4 probes of readings via COPY."""
    import psycopg

    from app.db import get_database
    from app.iot.models import Cook, Device, Probe
    from app.iot.readings import ROLLUP_BACKFILL

    with get_database(database_url).session() as session:
        session.add(
            Device(
                id=DEVICE,
                name="Bench smoker",
                mqtt_username=DEVICE,
                notify_urls=[],
                home_assistant_discovery=False,
                created_at=start,
            )
        )
        session.flush()
        for probe in PROBES:
            session.add(Probe(device_id=DEVICE, probe_id=probe, name=probe, role="food"))
        end = start + timedelta(hours=HOURS)
        cook = Cook(device_id=DEVICE, started_at=start, last_reading_at=end, ended_at=end)
        session.add(cook)
        session.flush()
        cook_id = cook.id
    buffer = io.StringIO()
    seconds = HOURS * 3600
    for second in range(seconds):
        ts = (start + timedelta(seconds=second)).isoformat()
        for n, probe in enumerate(PROBES):
            temp = 20 + n * 10 + 80 * (second / seconds) + (second % 7) * 0.1
            buffer.write(f"{DEVICE}\t{probe}\t{second + 1}\t{ts}\t{ts}\t{cook_id}\t{temp:.2f}\t")
            buffer.write(f"{temp:.2f}\tok\t0.1\n")
    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as connection:
        columns = "device_id, probe_id, seq, ts, received_at, cook_id, temp_c, raw_temp_c, "
        columns += "status, rate_c_per_min"
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY iot_readings ({columns}) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
            cursor.execute(ROLLUP_BACKFILL["postgresql"])
    # Rows written over 12 hours have been vacuumed and analysed by autovacuum along the way;
    # rows COPYed a second ago have not (no visibility map, no hint bits, no statistics), and
    # autovacuum would otherwise do it in the middle of the measurement.
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) iot_readings")
        connection.execute("VACUUM (ANALYZE) iot_readings_rollup")
    return seconds * len(PROBES)


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app_from_env",
            "--host=127.0.0.1",
            f"--port={port}",
            "--log-level=warning",
            "--ws=websockets-sansio",
        ],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the API did not start")


def downsample_sql(
    database_url: str, start: datetime, queries: int, raw: bool = False
) -> list[float]:
    """The same downsampling without HTTP and GraphQL: what the database alone costs (``raw``:
    grouped from the readings table, as before the rollup)."""
    from app.db import get_database
    from app.iot.downsample import _from_readings, buckets

    database = get_database(database_url)
    timings = []
    group = _from_readings if raw else buckets
    for _ in range(queries):
        began = time.perf_counter()
        with database.session() as session:
            group(session, DEVICE, start, start + timedelta(hours=HOURS), 1000, None)
        timings.append((time.perf_counter() - began) * 1000)
    return timings


#: the two shapes of the same series: one object per bucket, or parallel arrays
SHAPES = {
    "points": "points { ts tempC minC maxC }",
    "columns": "columns { ts tempC minC maxC }",
}


def downsample(
    port: int, start: datetime, queries: int, shape: str = "points"
) -> tuple[list[float], int]:
    import httpx

    query = (
        "query($d: ID!, $s: DateTime!, $e: DateTime!) { readings(deviceId: $d, start: $s, "
        f"end: $e, maxPoints: 1000) {{ probeId {SHAPES[shape]} }} }}"
    )
    variables = {
        "d": DEVICE,
        "s": start.isoformat(),
        "e": (start + timedelta(hours=HOURS)).isoformat(),
    }
    timings: list[float] = []
    points = 0
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        for i in range(queries + 5):
            began = time.perf_counter()
            response = http.post("/graphql", json={"query": query, "variables": variables})
            elapsed = (time.perf_counter() - began) * 1000
            body = response.json()
            assert "errors" not in body, body
            series = body["data"]["readings"]
            assert len(series) == len(PROBES)
            points = max(len(s[shape]["ts"] if shape == "columns" else s[shape]) for s in series)
            if i >= 5:  # warm-up: connections, caches
                timings.append(elapsed)
    return timings, points


async def fanout(port: int, subscribers: int, messages: int, settings: Any) -> list[float]:
    import httpx
    from websockets.asyncio.client import connect

    from app import realtime

    steady_client()
    sent: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    expected = subscribers * messages

    async def client(index: int) -> None:
        async with connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
        ) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"x-api-key": TOKEN}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            query = (
                f'subscription {{ readings(deviceId: "{DEVICE}") {{ seq ts probes {{ tempC }} }} }}'
            )
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": query, "variables": {"d": DEVICE}},
                    }
                )
            )
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "next":
                    seq = message["payload"]["data"]["readings"]["seq"]
                    latencies.append((time.perf_counter() - sent[seq]) * 1000)
                    if len(latencies) >= expected:
                        done.set()
                elif message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))

    tasks = [asyncio.create_task(client(i)) for i in range(subscribers)]
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            line = next(
                (
                    ln
                    for ln in metrics.splitlines()
                    if 'active_subscriptions{field="readings"}' in ln
                ),
                "x 0",
            )
            if float(line.rsplit(" ", 1)[1]) >= subscribers:
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("the subscribers did not all start")
    await asyncio.sleep(0.5)
    for seq in range(1, messages + 1):
        message = {
            "device_id": DEVICE,
            "seq": seq,
            "ts": datetime.now(UTC).isoformat(),
            "cook_id": None,
            "probes": [
                {"probe_id": p, "temp_c": 100.0 + seq, "status": "ok", "rate_c_per_min": 0.5}
                for p in PROBES
            ],
        }
        sent[seq] = time.perf_counter()
        await asyncio.to_thread(realtime.publish, settings, f"readings:{DEVICE}", message)
        await asyncio.sleep(0.1)
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=30)
    args = parser.parse_args()

    from app.config import load_settings
    from app.migrate import upgrade
    from tests.services import free_port

    with fresh_postgres() as database_url, tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            database_url=database_url,
            redis_url=REDIS,
            access_keys=f"AKBENCH:{SECRET}:viewer",
            log_level="WARNING",
        )
        upgrade(settings.sqlalchemy_url)
        start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
        began = time.perf_counter()
        readings = load_cook(settings.sqlalchemy_url, start)
        load_seconds = time.perf_counter() - began
        port = free_port()
        env = {
            "SMOKEHOUSE_DATABASE_URL": database_url,
            "SMOKEHOUSE_REDIS_URL": REDIS,
            "SMOKEHOUSE_ACCESS_KEYS": f"AKBENCH:{SECRET}:viewer",
            "SMOKEHOUSE_AUTO_MIGRATE": "false",
            "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
            "SMOKEHOUSE_LOG_LEVEL": "WARNING",
            "SMOKEHOUSE_DATA_DIR": data_dir,
        }
        api = serve(env, port)
        try:
            sql = downsample_sql(settings.sqlalchemy_url, start, 10)
            sql_raw = downsample_sql(settings.sqlalchemy_url, start, 10, raw=True)
            with PeakRss({"api": api.pid}) as rss:
                timings, points = downsample(port, start, args.queries, "columns")
                point_timings, _ = downsample(port, start, args.queries, "points")
                latencies = asyncio.run(fanout(port, args.subscribers, args.messages, settings))
        finally:
            api.terminate()
            api.wait(15)
    emit(
        {
            "bench": "graphql",
            "readings": readings,
            "load_seconds": round(load_seconds, 2),
            "points_per_probe": points,
            "downsample_queries": len(timings),
            "downsample_p50_ms": round(statistics.median(timings), 1),
            "downsample_p95_ms": round(percentile(timings, 0.95), 1),
            "downsample_points_p50_ms": round(statistics.median(point_timings), 1),
            "downsample_points_p95_ms": round(percentile(point_timings, 0.95), 1),
            "downsample_sql_p50_ms": round(statistics.median(sql), 1),
            "downsample_sql_raw_p50_ms": round(statistics.median(sql_raw), 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "fanout_subscribers": args.subscribers,
            "fanout_messages": args.messages,
            "fanout_deliveries": len(latencies),
            "fanout_p50_ms": round(statistics.median(latencies), 1),
            "fanout_p99_ms": round(percentile(latencies, 0.99), 1),
            "rss_mb": rss.peaks,
        }
    )


if __name__ == "__main__":
    main()
