"""A worker pool sized from an SQS queue: a real autoscaler pass reads the queue's depth
(visible + in flight) through the depth source ``app.wiring`` registers, not the broker."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

import app.wiring  # noqa: F401  (registers the SQS depth source)
from app.config import Settings
from app.db import get_database
from app.queues.sqs import messages as sqs_messages
from app.queues.sqs import queues as sqs_queues
from app.queues.sqs.queues import Where
from app.queues.sqs.service import send_message
from app.scaling.autoscaler import Autoscaler
from app.scaling.depth import QueueDepth
from app.scaling.settings import load_scaling_settings
from app.scaling.wake import WakeCheck
from tests.integration.scaling.test_autoscaler import T0, RecordingBackend
from tests.integration.scaling.test_wake import Sent
from tests.services import migrate

pytestmark = pytest.mark.integration

WHERE = Where(region="us-east-1", account_id="000000000000", endpoint="http://localhost")


def no_broker(url: str, queues: Sequence[str]) -> dict[str, QueueDepth]:
    assert not queues, f"the broker was asked about {queues}"
    return {}


def test_pool_is_sized_from_sqs_depth(
    settings_factory: Callable[..., Settings], database_url: str
) -> None:
    settings = settings_factory(worker_concurrency=2, database_url=database_url)
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        sqs_queues.create(session, "orders", {}, {}, WHERE)
    with database.session() as session:
        for n in range(7):
            send_message(session, "orders", f"order {n}", account_id=WHERE.account_id)
    with database.session() as session:
        queue = sqs_queues.get(session, "orders")
        assert len(sqs_messages.receive(session, queue, 2, 60)) == 2  # now in flight

    backend = RecordingBackend()
    scaling = load_scaling_settings(
        queues="pickers",
        sqs_queues="pickers=orders",
        max_workers=10,
        stabilization_seconds=60,
        idle_cooldown_seconds=30,
        liveness_seconds=300,
    )
    autoscaler = Autoscaler(settings, scaling, backend, depth_probe=no_broker)
    assert autoscaler.depths(["pickers"])["pickers"] == QueueDepth("pickers", 5, 2)
    [outcome] = autoscaler.run_once(T0)
    # 5 waiting + 2 being worked, 2 per worker: 4 workers for the pool.
    assert outcome.decision.desired == 4
    assert backend.calls[0][:2] == ("pickers", 4)


def test_missing_sqs_queue_sizes_pool_to_minimum(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(worker_concurrency=2)
    migrate(settings.sqlalchemy_url)
    scaling = load_scaling_settings(queues="pickers", sqs_queues="pickers=nowhere", min_workers=1)
    autoscaler = Autoscaler(settings, scaling, RecordingBackend(), depth_probe=no_broker)
    [outcome] = autoscaler.run_once(T0)
    assert outcome.decision.desired == 1


def test_scheduler_wake_up_sees_the_first_sqs_message(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        scaling={"backend": "docker", "queues": "pickers", "sqs_queues": "pickers=orders"}
    )
    migrate(settings.sqlalchemy_url)
    database = get_database(settings.sqlalchemy_url)
    with database.session() as session:
        sqs_queues.create(session, "orders", {}, {}, WHERE)
    check = WakeCheck(settings, no_broker)
    sent = Sent()
    assert check(sent) is False
    with database.session() as session:
        send_message(session, "orders", "first", account_id=WHERE.account_id)
    assert check(sent) is True
    assert sent == ["scaling.autoscale"]
