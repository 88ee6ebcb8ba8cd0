"""Fixtures: a real Mosquitto per test (see device_harness.py) and MQTT collectors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from device_harness import Broker, Collector, free_port


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    brokers: list[Broker] = []

    def make(*, persistence: bool = False, extra: str = "", start: bool = True) -> Broker:
        workdir = tmp_path / f"broker{len(brokers)}"
        workdir.mkdir()
        broker = Broker(workdir, free_port(), persistence=persistence, extra=extra)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def broker(make_broker: Callable[..., Broker]) -> Broker:
    return make_broker()


@pytest.fixture
def collectors() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(port: int, topic: str, **kwargs: Any) -> Collector:
        c = Collector(port, topic, **kwargs)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop()
