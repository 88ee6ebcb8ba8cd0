"""GitLab webhook: response time at a steady request rate, and pending job → RunInstances.

Production shape on one machine: ``smokehouse api`` (one uvicorn process) and one
``smokehouse worker`` on PostgreSQL + Redis, EC2 played by ``moto_server`` (its own process).

1. **Response time.** Job Hooks (``running``, which every job sends; each is routed to the
   job-timeline handler, so the workers are busy while we measure) are sent open-loop at
   ``--rate`` requests/s for ``--seconds`` from a few client threads with keep-alive; the latency
   of each request is measured from its scheduled send time, so a stalled server is not hidden
   (no coordinated omission).
2. **Pending → RunInstances.** After the load drained, ``--jobs`` pending Job Hooks are sent one
   at a time; for each, the time from sending the webhook until its instance (tag
   ``smokehouse:job-id``) is visible in EC2's DescribeInstances, polled every 20 ms.
3. **Pending → a warm runner assigned.** A profile with a warm pool (``--pool`` idle runners,
   launched ahead by a pool pass, registered with the fake GitLab API that also answers the
   job checks): ``--jobs`` pending Job Hooks one at a time; for each, the time from sending the
   webhook until the job is bound to a pool runner (its ``assigned`` timeline mark, polled every
   10 ms in the database); the worker refills the pool before the next job is sent.

Also printed: the share of webhooks the server itself answered within 50 ms (its own latency
histogram, without the client's queueing), the API process's and the client's CPU time per
webhook during the load (what a request costs whatever else the machine does), the peak memory
(PSS) of the API, the worker and the client, and the 1-minute load average before and after it.
The client freezes its own heap before the load (``steady_client``): its collector's full
passes, 150-170 ms over everything this process imported, were the tail this bench reported.

    python bench/webhook.py [--rate 200] [--seconds 10] [--jobs 15] [--pool 2] [--quiet-workers]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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
    steady_client,
    workers,
)

TOKEN = "bench-hook-8Rn3Vx6Qk1Zt4Wm9"
sys.path.insert(0, str(ROOT))

from tests.integration.runners.fake_gitlab import FakeGitLab  # noqa: E402
from tests.integration.runners.payloads import headers, job_hook  # noqa: E402
from tests.services import free_port  # noqa: E402

PROFILES = """
default: small
profiles:
  small:
    kind: ec2
    image_id: ami-12345678
    instance_types: [t3.small]
    max_concurrent: 1000
  warm:
    kind: ec2
    tags: [warm]
    image_id: ami-12345678
    instance_types: [t3.small]
    max_concurrent: 1000
    pool: {idle_count: POOL, idle_time: 10m}
"""


def wait_port(port: int, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    shown = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise SystemExit(f"nothing listens on {port} after {timeout}s\n{shown}")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(
    url: str, rate: float, seconds: float, threads: int, first_job: int = 10_000_000
) -> tuple[list[float], int]:
    """Open-loop load: request i is due at start + i/rate; latency counts from when it was due."""
    import httpx

    steady_client()
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def run(offset: int) -> None:
        nonlocal errors
        with httpx.Client(timeout=10) as client:
            for i in range(offset, total, threads):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                response = client.post(
                    url, json=job_hook(first_job + i, "running"), headers=headers(token=TOKEN)
                )
                took = time.perf_counter() - due
                with lock:
                    latencies.append(took)
                    errors += response.status_code != 200

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, errors


def measured(
    api_pid: int, url: str, args: argparse.Namespace
) -> tuple[list[float], int, float, float, list[float]]:
    """The load phase: latencies, errors, the API's and this client's CPU seconds and the load
    average around it."""
    if args.warmup > 0:  # a deployed API is warm: first connections, caches, lazy imports
        load(url, min(args.rate, 50.0), args.warmup, args.threads, first_job=30_000_000)
    before, cpu, client = os.getloadavg()[0], cpu_of(api_pid), cpu_of(os.getpid())
    latencies, errors = load(url, args.rate, args.seconds, args.threads)
    return (
        latencies,
        errors,
        cpu_of(api_pid) - cpu,
        cpu_of(os.getpid()) - client,
        [round(before, 2), round(os.getloadavg()[0], 2)],
    )


def server_within(base: str, seconds: float) -> float | None:
    """The share of webhook requests the server itself answered within ``seconds``, from its
    own latency histogram (``/metrics``): the server's part, without the client's queueing."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", timeout=10).text
    within = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "smokehouse_http_request_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("route") != "/webhooks/gitlab":
                continue
            if sample.name.endswith("_count"):
                total = sample.value
            if sample.name.endswith("_bucket") and float(sample.labels["le"]) == seconds:
                within = sample.value
    return round(within / total, 4) if total else None


def drained(database_url: str, timeout: float) -> None:
    from sqlalchemy import func, select

    from app.bus.models import Delivery
    from app.db import get_database

    database = get_database(database_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.session() as session:
            busy = session.scalar(
                select(func.count()).where(Delivery.status.in_(("pending", "running")))
            )
        if not busy:
            return
        time.sleep(0.5)
    print(f"warning: deliveries still pending after {timeout}s", file=sys.stderr)


def known_job(gitlab: FakeGitLab, job_id: int, tags: list[str]) -> None:
    """GitLab's side of a pending job, which the start workflow checks before launching."""
    gitlab.jobs[(380, job_id)] = {
        "id": job_id,
        "name": "test",
        "status": "pending",
        "tag_list": tags,
        "pipeline": {"id": 1, "project_id": 380},
    }


def pending_to_run(url: str, ec2: Any, gitlab: FakeGitLab, jobs: int) -> list[float]:
    import httpx

    found: list[float] = []
    for n in range(jobs):
        job_id = 20_000_000 + n
        known_job(gitlab, job_id, [])
        sent = time.perf_counter()
        response = httpx.post(url, json=job_hook(job_id, "pending"), headers=headers(token=TOKEN))
        assert response.status_code == 200, response.text
        deadline = sent + 30
        while time.perf_counter() < deadline:
            reservations = ec2.describe_instances(
                Filters=[{"Name": "tag:smokehouse:job-id", "Values": [str(job_id)]}]
            )["Reservations"]
            if reservations:
                found.append(time.perf_counter() - sent)
                break
            time.sleep(0.02)
        time.sleep(0.2)
    return found


def pending_to_assigned(
    url: str, database_url: str, gitlab: FakeGitLab, jobs: int, pool: int
) -> list[float]:
    """Warm jobs one at a time: webhook sent → the job bound to a pool runner."""
    import httpx
    from sqlalchemy import func, select

    from app.db import get_database
    from app.runners.models import Runner, RunnerJob

    database = get_database(database_url)

    def idle() -> int:
        with database.session() as session:
            return int(
                session.scalar(
                    select(func.count()).where(Runner.pool.is_(True), Runner.state == "idle")
                )
                or 0
            )

    found: list[float] = []
    for n in range(jobs):
        deadline = time.monotonic() + 30
        while idle() < pool and time.monotonic() < deadline:  # the refill landed
            time.sleep(0.05)
        job_id = 30_000_000 + n
        known_job(gitlab, job_id, ["warm"])
        sent = time.perf_counter()
        response = httpx.post(url, json=job_hook(job_id, "pending"), headers=headers(token=TOKEN))
        assert response.status_code == 200, response.text
        while time.perf_counter() < sent + 30:
            with database.session() as session:
                phase = session.scalar(select(RunnerJob.phase).where(RunnerJob.job_id == job_id))
            if phase == "assigned":
                found.append(time.perf_counter() - sent)
                break
            time.sleep(0.01)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pool", type=int, default=2, help="idle runners of the warm profile")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of light load first, not measured"
    )
    parser.add_argument(
        "--quiet-workers",
        action="store_true",
        help="no worker runs during the load (ingest alone); they drain the deliveries after",
    )
    args = parser.parse_args()

    import boto3

    from app.config import load_settings
    from app.migrate import upgrade
    from app.runners.pool import maintain
    from app.runners.profiles import load_profiles
    from workers.celery_app import create_celery

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    (tmp / "runners.yaml").write_text(PROFILES.replace("POOL", str(args.pool)))
    moto_port, api_port = free_port(), free_port()
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gitlab = FakeGitLab().__enter__()
    gitlab.projects[380] = {"id": 380, "path_with_namespace": "gitlab-org/gitlab-test"}
    os.environ.update(
        {"SMOKEHOUSE_GITLAB_URL": gitlab.url, "SMOKEHOUSE_GITLAB_API_TOKEN": gitlab.token}
    )
    try:
        with fresh_postgres() as database_url:
            settings = load_settings(database_url=database_url, broker_url=REDIS)
            upgrade(settings.sqlalchemy_url)
            create_celery(settings).control.purge()
            env = {
                **aws,
                "SMOKEHOUSE_DATABASE_URL": database_url,
                "SMOKEHOUSE_BROKER_URL": REDIS,
                "SMOKEHOUSE_DATA_DIR": str(tmp / "data"),
                "SMOKEHOUSE_HTTP_PORT": str(api_port),
                "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN": TOKEN,
                "SMOKEHOUSE_RUNNERS_PROFILES_FILE": str(tmp / "runners.yaml"),
                "SMOKEHOUSE_ACCESS_KEYS": ACCESS_KEYS,
                "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
                "SMOKEHOUSE_LOG_LEVEL": "WARNING",
                "SMOKEHOUSE_GITLAB_URL": gitlab.url,
                "SMOKEHOUSE_GITLAB_API_TOKEN": gitlab.token,
            }
            api = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "api", "--no-migrate"],
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "api.log").open("wb"),
            )
            try:
                wait_port(moto_port, 30)
                wait_port(api_port, 60, (tmp / "api.log"))
                url = f"http://127.0.0.1:{api_port}/webhooks/gitlab"
                if args.quiet_workers:  # measure ingest alone; workers drain afterwards
                    with PeakRss({"api": api.pid, "client": os.getpid()}) as rss:
                        latencies, errors, api_cpu, client_cpu, loads = measured(api.pid, url, args)
                with workers(env, 1, "--queues=bus,workflows,runners", "--concurrency=2") as procs:
                    time.sleep(3)  # let the worker connect
                    if not args.quiet_workers:
                        watched = {"api": api.pid, "worker": procs[0].pid, "client": os.getpid()}
                        with PeakRss(watched) as rss:
                            latencies, errors, api_cpu, client_cpu, loads = measured(
                                api.pid, url, args
                            )
                    drained(database_url, 120)
                    server_share = server_within(f"http://127.0.0.1:{api_port}", 0.05)
                    ec2 = boto3.client("ec2")
                    launches = pending_to_run(url, ec2, gitlab, args.jobs)
                    pool_settings = load_settings(
                        database_url=database_url, broker_url=REDIS, secret_key=SECRET_KEY
                    )
                    maintain(pool_settings, load_profiles(tmp / "runners.yaml"), ec2=ec2)
                    warm = pending_to_assigned(url, database_url, gitlab, args.jobs, args.pool)
            finally:
                api.terminate()
                api.wait(20)
    finally:
        moto.terminate()
        moto.wait(20)
        gitlab.__exit__(None, None, None)
    millis = [x * 1000 for x in latencies]
    emit(
        {
            "bench": "webhook",
            "requests": len(millis),
            "rate": args.rate,
            "errors": errors,
            "p50_ms": round(percentile(millis, 0.50), 2),
            "p99_ms": round(percentile(millis, 0.99), 2),
            "max_ms": round(max(millis), 2),
            "server_within_50ms": server_share,
            "api_cpu_ms_per_request": round(api_cpu * 1000 / max(1, len(millis)), 2),
            "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(millis)), 2),
            "loadavg_1m": loads,
            "rss_mb": rss.peaks,
            "workers_during_load": not args.quiet_workers,
            "jobs": args.jobs,
            "launched": len(launches),
            "pending_to_run_p50_s": round(statistics.median(launches), 3) if launches else None,
            "pending_to_run_max_s": round(max(launches), 3) if launches else None,
            "pool": args.pool,
            "warm_assigned": len(warm),
            "pending_to_assigned_warm_p50_s": round(statistics.median(warm), 3) if warm else None,
            "pending_to_assigned_warm_max_s": round(max(warm), 3) if warm else None,
        }
    )


if __name__ == "__main__":
    main()
