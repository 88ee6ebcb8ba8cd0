"""The embedded SQLite broker is at-least-once: a consumer killed with -9 loses nothing, ack
removes the message, reject-with-requeue puts back the same message (no copy)."""

from __future__ import annotations

import contextlib
import queue as queues
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.messaging import Consumer, Producer

import app.broker.sqlite  # noqa: F401
from tests.services import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"smokehouse+sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def connection(broker_url: str) -> Iterator[Connection]:
    with Connection(broker_url, transport_options={"visibility_timeout": 1}) as conn:
        yield conn


def row_count(tmp_path: Path) -> int:
    import sqlite3

    with sqlite3.connect(tmp_path / "broker.db") as db:
        return int(db.execute("SELECT count(*) FROM kombu_message").fetchone()[0])


def test_ack_deletes_the_message(connection: Connection, tmp_path: Path) -> None:
    queue = connection.SimpleQueue("jobs")
    queue.put({"n": 1})
    message = queue.get(timeout=2)
    assert message.payload == {"n": 1}
    message.ack()
    assert row_count(tmp_path) == 0
    queue.close()


def test_reject_with_requeue_returns_the_same_message(
    connection: Connection, tmp_path: Path
) -> None:
    queue = connection.SimpleQueue("jobs")
    queue.put({"n": 2})
    queue.get(timeout=2).requeue()
    assert row_count(tmp_path) == 1
    again = queue.get(timeout=2)
    assert again.payload == {"n": 2}
    again.ack()
    assert row_count(tmp_path) == 0
    queue.close()


def test_message_of_a_killed_consumer_is_delivered_again(
    connection: Connection, broker_url: str, tmp_path: Path
) -> None:
    queue = connection.SimpleQueue("jobs")
    queue.put({"n": 3})
    # Another process takes the message and dies without acking (os._exit: no cleanup at all,
    # exactly like kill -9).
    script = textwrap.dedent(
        f"""
        import os, app.broker.sqlite
        from kombu.connection import Connection
        conn = Connection({broker_url!r}, transport_options={{"visibility_timeout": 1}})
        message = conn.SimpleQueue("jobs").get(timeout=5)
        print(message.payload["n"], flush=True)
        os._exit(0)
        """
    )
    taken = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert taken.stdout.strip() == "3", taken.stderr
    # Invisible while the lease is fresh...
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.3)
    # ...and delivered again, flagged as redelivered, once the lease expires.
    again = queue.get(timeout=5)
    assert again.payload == {"n": 3}
    assert (
        again.delivery_info.get("redelivered")
        or again.properties.get("redelivered")
        or (again.headers is not None)
    )
    again.ack()
    assert row_count(tmp_path) == 0
    queue.close()


def test_acks_from_another_thread_while_polling(broker_url: str, tmp_path: Path) -> None:
    """A Celery worker on this transport polls in its main thread while its pool's result
    thread acks. Sharing one SQLAlchemy session between them stopped the worker for good
    ("This session is in 'prepared' state"); every message must be taken and acked once."""
    count = 300
    jobs = Queue("jobs", routing_key="jobs")
    with Connection(broker_url, transport_options={"polling_interval": 0.001}) as conn:
        with conn.channel() as channel:
            producer = Producer(channel)
            for n in range(count):
                producer.publish({"n": n}, routing_key="jobs", declare=[jobs])
        taken: queues.Queue[Any] = queues.Queue()
        seen: list[int] = []
        errors: list[BaseException] = []

        def ack_in_this_thread() -> None:
            while (message := taken.get()) is not None:
                try:
                    message.ack()
                except BaseException as exc:
                    errors.append(exc)

        def take(body: Any, message: Any) -> None:
            seen.append(body["n"])
            taken.put(message)

        acker = threading.Thread(target=ack_in_this_thread)
        acker.start()
        try:
            with Consumer(conn, [jobs], callbacks=[take]):
                deadline = time.monotonic() + 60
                while len(seen) < count and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.5)
        finally:
            taken.put(None)
            acker.join(30)
    assert not errors
    assert sorted(seen) == list(range(count))
    assert row_count(tmp_path) == 0


FIRST_USE = textwrap.dedent(
    """
    import sys, time
    from kombu.connection import Connection
    import app.broker.sqlite  # noqa: F401
    url, start, n = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    time.sleep(max(0.0, start - time.time()))  # every process opens the new file at once
    with Connection(url) as connection:
        connection.SimpleQueue("first-use").put({"n": n})
    """
)


def test_processes_that_first_use_the_broker_at_once_all_publish(tmp_path: Path) -> None:
    """Ingest and a starting worker can open a new broker file at the same moment: both find
    no tables, and the slower one's CREATE TABLE used to fail ("already exists"), losing its
    publish to the sweeper."""
    url = f"smokehouse+sqlite:///{tmp_path / 'broker.db'}"
    start = time.time() + 3  # after every interpreter has imported kombu
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE, url, str(start), str(n)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for n in range(6)
    ]
    failures = [p.stderr.read().decode() for p in processes if p.wait(60) != 0 and p.stderr]
    assert failures == []
    with Connection(url) as connection:
        box = connection.SimpleQueue("first-use")
        received = sorted(box.get(timeout=5).payload["n"] for _ in range(6))
    assert received == [str(n) for n in range(6)]
