"""The seed's queue poller (2017), unchanged: a plain boto3 program that long-polls an SQS queue,
runs a handler for each message and deletes the message when the handler succeeded.

A handler runs synchronously (the poller waits for it) or, with ``POLLER_MODE=async``, on a
thread pool (the message is deleted when it completes, so up to ``POLLER_CONCURRENCY`` run at
once). A handler that raises leaves its message alone: it comes back after the queue's
visibility timeout, and a queue with a redrive policy moves it to its dead-letter queue after
``maxReceiveCount`` receives. SIGTERM (a scale-down) stops receiving, lets running handlers
finish and deletes what they completed, then exits.

Configuration (the AWS SDK's own variables for the endpoint and credentials):

    AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL   e.g. http://127.0.0.1:8000 (smokehouse)
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
    QUEUE_NAME          the queue to poll
    POLLER_HANDLER      module:function taking the message body (default: handlers:handle)
    POLLER_MODE         sync (default) or async
    POLLER_CONCURRENCY  async handlers at once (default 4)
    POLLER_WAIT_SECONDS the long poll's wait (default 20; also the longest a SIGTERM waits)
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import boto3

log = logging.getLogger("sqs-poller")


def load_handler(spec: str) -> Callable[[str], Any]:
    module, _, name = spec.partition(":")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    return getattr(importlib.import_module(module), name or "handle")  # type: ignore[no-any-return]


class Poller:
    def __init__(
        self, sqs: Any, queue_url: str, handler: Callable[[str], Any], mode: str, concurrency: int
    ):
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.mode = mode
        self.pool = ThreadPoolExecutor(concurrency) if mode == "async" else None
        self.slots = threading.Semaphore(concurrency)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            wanted = 10 if self.pool is None else 1
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=int(os.environ.get("POLLER_WAIT_SECONDS", "20")),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            for message in messages:
                if self.pool is None:
                    self.handle(message)
                else:
                    self.slots.acquire()
                    future: Future[None] = self.pool.submit(self.handle, message)
                    future.add_done_callback(lambda _: self.slots.release())
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def handle(self, message: dict[str, Any]) -> None:
        try:
            self.handler(message["Body"])
        except Exception:
            log.exception(
                "message %s failed; it comes back after its visibility timeout",
                message["MessageId"],
            )
            return
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        log.info("message %s done", message["MessageId"])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    queue_url = sqs.get_queue_url(QueueName=os.environ["QUEUE_NAME"])["QueueUrl"]
    poller = Poller(
        sqs,
        queue_url,
        load_handler(os.environ.get("POLLER_HANDLER", "handlers:handle")),
        os.environ.get("POLLER_MODE", "sync"),
        int(os.environ.get("POLLER_CONCURRENCY", "4")),
    )
    signal.signal(signal.SIGTERM, lambda *_: poller.stopping.set())
    log.info("polling %s", queue_url)
    poller.run()
    log.info("stopped")


if __name__ == "__main__":
    main()
