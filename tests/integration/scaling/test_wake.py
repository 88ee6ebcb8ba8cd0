"""The 0→N wake-up in the scheduler's path: when an autoscaled queue goes from empty to
non-empty, the leading scheduler sends an autoscaler pass at once instead of at the next 10 s
tick. Before: only ``smokehouse scaling run`` had it; a compose deployment driving the docker
backend from the scheduler made an idle queue's first message wait up to 10 s for a pass."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from app.broker.beat import LeasedScheduler
from app.broker.celery import create_celery
from app.config import Settings
from app.scaling.depth import QueueDepth, probe
from app.scaling.wake import WakeCheck
from tests.services import migrate

pytestmark = pytest.mark.integration


class Sent(list[str]):
    def send_task(self, name: str, **_: Any) -> None:
        self.append(name)


def fake_probe(depths: dict[str, int]) -> Callable[[str, Sequence[str]], dict[str, QueueDepth]]:
    return lambda url, queues: {q: QueueDepth(q, depths.get(q, 0), 0) for q in queues}


def test_a_pass_is_sent_on_each_empty_to_non_empty_edge_only(
    settings_factory: Callable[..., Settings],
) -> None:
    depths: dict[str, int] = {}
    check = WakeCheck(
        settings_factory(scaling={"backend": "docker", "queues": "a,b"}), fake_probe(depths)
    )
    sent = Sent()
    assert check(sent) is False
    depths["a"] = 3
    assert check(sent) is True
    assert check(sent) is False  # still busy: the periodic pass takes it from here
    depths["a"] = 0
    check(sent)
    depths["a"] = depths["b"] = 1
    assert check(sent) is True
    assert sent == ["scaling.autoscale", "scaling.autoscale"]  # one pass for both queues


def test_backends_the_scheduler_does_not_drive_are_left_alone(
    settings_factory: Callable[..., Settings],
) -> None:
    for backend in ("none", "process"):
        check = WakeCheck(
            settings_factory(scaling={"backend": backend}), fake_probe({"default": 5})
        )
        sent = Sent()
        assert check(sent) is False
        assert sent == []


def test_the_leading_scheduler_sends_a_pass_within_a_second_of_the_first_message(
    settings_factory: Callable[..., Settings],
) -> None:
    import app.wiring  # noqa: F401  (registers the wake-up hook, as every entry point does)

    settings = settings_factory(scaling={"backend": "docker", "queues": "wakeq"})
    migrate(settings.sqlalchemy_url)
    celery = create_celery(settings)
    scheduler = LeasedScheduler(app=celery, lazy=True)

    def run_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(scheduler.tick(), 0.05))

    run_for(1.0)  # leads, learns that wakeq is empty
    assert probe(settings.celery_broker_url, ["default"])["default"].total == 0
    celery.send_task("scaling.handle", kwargs={"message_id": "x"}, queue="wakeq")
    sent_at = time.monotonic()
    while probe(settings.celery_broker_url, ["default"])["default"].total == 0:
        assert time.monotonic() - sent_at < 1.0, "no autoscaler pass within 1 s"
        run_for(0.05)
    scheduler.close()
