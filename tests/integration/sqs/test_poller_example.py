"""``examples/sqs-poller``, the seed's plain boto3 poller, run as its own process against a live
smokehouse: it handles and deletes what succeeds, a failing message ends in the dead-letter
queue after ``maxReceiveCount`` receives, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db import get_database
from app.scaling.autoscaler import Autoscaler
from app.scaling.backends.process import ProcessBackend
from app.scaling.models import ScalingWorker
from app.scaling.settings import load_scaling_settings
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import cli_env
from tests.integration.sqs.conftest import ADMIN_SECRET, REGION, Live
from tests.services import wait_for

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sqs-poller"


def depth(sqs: Any, url: str) -> int:
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(got["ApproximateNumberOfMessages"]) + int(
        got["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_poller_handles_deletes_and_dead_letters(
    sqs: Any, live: Live, uid: str, tmp_path: Path, mode: str
) -> None:
    dlq = sqs.create_queue(QueueName=f"poll-dlq-{uid}-{mode}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    name = f"poll-{uid}-{mode}"
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    cuts = [f"cut-{i}" for i in range(5)]
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            *({"Id": str(i), "MessageBody": json.dumps({"cut": c})} for i, c in enumerate(cuts)),
            {"Id": "bad", "MessageBody": json.dumps({"cut": "shoe", "fail": True})},
        ],
    )
    out = tmp_path / "handled.txt"
    env = {
        "PATH": os.environ["PATH"],
        "AWS_ENDPOINT_URL_SQS": live.url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKSQS",
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        "QUEUE_NAME": name,
        "POLLER_MODE": mode,
        "POLLER_WAIT_SECONDS": "1",
        "POLLER_OUT": str(out),
    }
    poller = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "poller.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: depth(sqs, url) == 0 and depth(sqs, dlq) == 1,
            30,
            what="the queue drained and the failing message dead-lettered",
        )
        # at least once (a handler slower than the visibility timeout runs again: SQS's contract)
        assert set(out.read_text().split()) == set(cuts)
        (dead,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
        assert json.loads(dead["Body"])["cut"] == "shoe"
    finally:
        poller.send_signal(signal.SIGTERM)
        _, err = poller.communicate(timeout=20)
    assert poller.returncode == 0, err.decode()[-2000:]


@pytest.mark.slow
def test_the_autoscaler_runs_the_poller_from_the_queue_depth(
    sqs: Any, live: Live, uid: str, tmp_path: Path
) -> None:
    """The seed's design end to end: messages arrive, the autoscaler (a real loop, the process
    backend) starts pollers from the SQS queue's depth, they drain it, and once the pool has been
    idle past its cooldown the autoscaler stops them (SIGTERM: the poller's clean exit)."""
    name = f"scaled-{uid}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    cuts = [f"brisket-{i}" for i in range(30)]
    for start in range(0, len(cuts), 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps({"cut": c})}
                for i, c in enumerate(cuts[start : start + 10])
            ],
        )
    out = tmp_path / "handled.txt"
    pool = f"pit-{uid}"
    env = {
        **cli_env(
            data_dir=live.settings.data_dir,
            database_url=live.settings.database_url or "",
            log_format="console",
            scaling_heartbeat_seconds="0.3",
            secret_key=TEST_SECRET_KEY,
        ),
        "AWS_ENDPOINT_URL_SQS": live.url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKSQS",
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        "QUEUE_NAME": name,
        "POLLER_WAIT_SECONDS": "1",
        "POLLER_OUT": str(out),
    }
    scaling = load_scaling_settings(
        backend="process",
        queues=pool,
        sqs_queues=f"{pool}={name}",
        commands={pool: f"{sys.executable} {EXAMPLE / 'poller.py'}"},
        target_backlog_per_worker=10,
        max_workers=3,
        stabilization_seconds=1,
        idle_cooldown_seconds=1,
        liveness_seconds=10,
    )
    backend = ProcessBackend(
        concurrency=1, env=env, log_dir=tmp_path / "logs", commands=scaling.command_map
    )
    autoscaler = Autoscaler(live.settings, scaling, backend, publish=False)
    stop = threading.Event()
    loop = threading.Thread(target=autoscaler.serve, args=(stop, 0.2), daemon=True)
    database = get_database(live.settings.sqlalchemy_url)

    def workers() -> list[ScalingWorker]:
        with database.session() as session:
            return [w for w in session.scalars(select(ScalingWorker)) if pool in w.queues]

    loop.start()
    try:
        wait_for(
            lambda: out.exists() and set(out.read_text().split()) == set(cuts),
            60,
            what="the pollers the autoscaler started to handle every message",
        )
        wait_for(lambda: depth(sqs, url) == 0, 10, what="every message deleted")
        started = workers()
        assert started, "no poller was registered"
        assert all(w.id.startswith(f"proc-{pool}-") for w in started)
        wait_for(
            lambda: all(w.state == "stopped" for w in workers()),
            60,
            what="the idle pollers to be stopped after the cooldown",
        )

        def exited() -> bool:
            backend.reap_children()
            return not backend.running

        wait_for(exited, 20, what="the pollers' processes to exit")
    finally:
        stop.set()
        loop.join(30)
        backend.terminate_all(timeout=10)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "stopped" in logs, logs[-2000:]  # the poller's own clean-exit line
