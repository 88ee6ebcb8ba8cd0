"""kombu's key layout as the probes and recovery use it, and the scaling settings."""

from __future__ import annotations

import pytest

from app.config import ConfigError
from app.scaling.brokers import (
    broker_kind,
    priority_step,
    redis_key_for,
    redis_queue_keys,
    sqlite_path_url,
)
from app.scaling.settings import load_scaling_settings, policy_config


@pytest.mark.parametrize(
    ("priority", "step"), [(0, 0), (2, 0), (3, 3), (5, 3), (6, 6), (8, 6), (9, 9)]
)
def test_priority_steps_match_kombu(priority: int, step: int) -> None:
    from kombu.transport.redis import Channel

    assert priority_step(priority) == step
    assert Channel.priority(Channel.__new__(Channel), priority) == step


def test_redis_keys() -> None:
    assert redis_queue_keys("q") == ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
    assert redis_key_for("q", {"properties": {"priority": 7}}) == "q\x06\x166"
    assert redis_key_for("q", {"properties": {}}) == "q"
    assert redis_key_for("q", {"properties": {"priority": "x"}}) == "q"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://h:6379/0", "redis"),
        ("rediss://h/0", "redis"),
        ("amqp://guest@h//", "amqp"),
        ("pyamqp://h//", "amqp"),
        ("smokehouse+sqlite:////x/broker.db", "sqlite"),
        ("sqla+sqlite:///b.db", "sqlite"),
    ],
)
def test_broker_kind(url: str, kind: str) -> None:
    assert broker_kind(url) == kind


def test_unknown_broker_is_refused() -> None:
    with pytest.raises(ValueError, match="no depth probe"):
        broker_kind("sqs://")


def test_sqlite_url() -> None:
    assert sqlite_path_url("smokehouse+sqlite:////data/broker.db") == "sqlite:////data/broker.db"


def test_settings_defaults_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_scaling_settings(queues=" a, b ,,")
    assert settings.queue_list == ["a", "b"]
    assert settings.liveness_seconds == 30
    assert policy_config(settings, concurrency=2).concurrency == 2
    monkeypatch.setenv("SMOKEHOUSE_SCALING_BACKEND", "ec2")
    with pytest.raises(ConfigError, match="SMOKEHOUSE_SCALING_BACKEND"):
        load_scaling_settings()
