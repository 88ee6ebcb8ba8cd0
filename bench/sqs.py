"""SQS throughput and long-poll wake-up: smokehouse (PostgreSQL, durable) beside moto's server
(in memory, not durable) as the reference, with the same boto3 clients in the same run.

Each side gets: ``--threads`` clients sending ``--messages`` messages in 10-message
``SendMessageBatch`` calls (``send_mps``), then the same clients receiving 10 at a time and
deleting each batch with ``DeleteMessageBatch`` until the queue is empty
(``receive_delete_mps``); then a long poll (``WaitTimeSeconds=20``) waits on an empty queue
while another client sends one message, ``--polls`` times: the wake-up is from the send's
answer to the poll's answer (``long_poll_wake_p50_ms``/``_p95_ms``). smokehouse's API runs as
its own process (``smokehouse api``, as in production), with its resident memory reported.

    python bench/sqs.py [--messages 20000] [--threads 4] [--polls 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from common import ACCESS_KEYS, REDIS, ROOT, SECRET_KEY, emit, fresh_postgres

from tests.services import free_port

KEY_ID, KEY_SECRET = ACCESS_KEYS.split(":")[:2]


def client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=KEY_SECRET,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30, max_pool_connections=20),
    )


def in_threads(count: int, work: Callable[[int], None]) -> float:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def measure(url: str, messages: int, threads: int, polls: int) -> dict[str, float]:
    sqs = client(url)
    queue = sqs.create_queue(QueueName=f"bench-{os.getpid()}-{time.monotonic_ns()}")["QueueUrl"]
    body = "x" * 200
    per_thread = messages // threads
    clients = [client(url) for _ in range(threads)]

    def send(i: int) -> None:
        for n in range(0, per_thread, 10):
            entries = [{"Id": str(k), "MessageBody": body} for k in range(min(10, per_thread - n))]
            answer = clients[i].send_message_batch(QueueUrl=queue, Entries=entries)
            assert not answer.get("Failed"), answer["Failed"]

    send_s = in_threads(threads, send)
    print(f"{url}: sent {per_thread * threads} in {send_s:.1f} s", file=sys.stderr, flush=True)
    received = [0] * threads

    def drain(i: int) -> None:
        empty = 0
        while empty < 2:
            got = (
                clients[i]
                .receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=60)
                .get("Messages", [])
            )
            if not got:
                empty += 1
                continue
            empty = 0
            received[i] += len(got)
            clients[i].delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(got)
                ],
            )

    drain_s = in_threads(threads, drain)
    print(f"{url}: drained {sum(received)} in {drain_s:.1f} s", file=sys.stderr, flush=True)
    # at least once: a redelivery (moto's visibility timing) counts, a loss does not pass
    assert sum(received) >= per_thread * threads, (sum(received), per_thread * threads)

    wakes: list[float] = []
    poller, sender = client(url), client(url)
    for _ in range(polls):
        answer: dict[str, Any] = {}

        def poll(out: dict[str, Any] = answer) -> None:
            out["messages"] = poller.receive_message(QueueUrl=queue, WaitTimeSeconds=20).get(
                "Messages", []
            )
            out["at"] = time.perf_counter()

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.3)  # the poll is waiting
        sender.send_message(QueueUrl=queue, MessageBody="wake")
        sent_at = time.perf_counter()
        thread.join(30)
        assert answer["messages"], "the long poll returned empty"
        wakes.append(max(0.0, answer["at"] - sent_at) * 1000)
        poller.delete_message(QueueUrl=queue, ReceiptHandle=answer["messages"][0]["ReceiptHandle"])
    wakes.sort()
    return {
        "send_mps": round(per_thread * threads / send_s, 1),
        "receive_delete_mps": round(sum(received) / drain_s, 1),
        "long_poll_wake_p50_ms": round(statistics.median(wakes), 2),
        "long_poll_wake_p95_ms": round(wakes[int(len(wakes) * 0.95) - 1], 2),
    }


def api_rss_mb(pid: int) -> float:
    """The API's resident memory: uvicorn's supervisor plus its worker processes."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return round(sum(rss_mb(p) for p in [pid, *map(int, children)]), 1)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def wait_up(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the API exited with {process.returncode}")
        try:
            httpx.get(url + "/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--polls", type=int, default=30)
    # uvicorn worker processes, as `smokehouse api --workers N` (the compose file runs 2)
    parser.add_argument("--api-workers", type=int, default=2)
    # moto's server answers ~50 calls/s here: the same workload, fewer messages, same rates
    parser.add_argument("--moto-messages", type=int, default=2000)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    from app.migrate import upgrade

    result: dict[str, Any] = {
        "bench": "sqs",
        "messages": args.messages,
        "moto_messages": args.moto_messages,
        "threads": args.threads,
        "api_workers": args.api_workers,
    }
    with fresh_postgres() as database_url:
        upgrade(database_url)
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SMOKEHOUSE_DATABASE_URL": database_url,
            "SMOKEHOUSE_REDIS_URL": REDIS,
            "SMOKEHOUSE_BROKER_URL": REDIS,
            "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
            "SMOKEHOUSE_ACCESS_KEYS": ACCESS_KEYS,
            "SMOKEHOUSE_HTTP_PORT": str(port),
            "SMOKEHOUSE_LOG_LEVEL": "WARNING",
        }
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "api",
                "--no-migrate",
                "--workers",
                str(args.api_workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("SQS_BENCH_LOG", os.devnull), "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(url, api)
            result.update(measure(url, args.messages, args.threads, args.polls))
            result["api_rss_mb"] = api_rss_mb(api.pid)
        finally:
            api.terminate()
            api.wait(30)

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        reference = measure(
            f"http://{host}:{port}", args.moto_messages, args.threads, min(args.polls, 10)
        )
    finally:
        moto.stop()
    result.update({f"moto_{k}": v for k, v in reference.items()})
    emit(result)


if __name__ == "__main__":
    main()
