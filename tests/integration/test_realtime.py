"""Live fan-out across processes, both transports: Redis pub/sub (production) and the MQTT
broker of embedded mode (amqtt, run as ``smokehouse mqtt-broker``). A message published by
another process reaches every local subscriber through one shared connection; a subscriber
that goes away leaves nothing subscribed; ``publish`` never raises, whatever is down."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import redis

from app import realtime
from app.config import Settings
from tests.integration.cli import cli_env, smokehouse_argv
from tests.services import ROOT, free_port, require_redis, tcp_open, wait_for

pytestmark = pytest.mark.integration


async def confirmed_channels(count: int, timeout: float = 10) -> None:
    """Until the broker has confirmed exactly ``count`` channels with local subscribers (SUBACK
    on MQTT, the subscribe reply on Redis): the readiness signal, not a guessed sleep."""
    deadline = asyncio.get_running_loop().time() + timeout
    while realtime.active_channels() != count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{realtime.active_channels()} confirmed channels, not {count}")
        await asyncio.sleep(0.01)


PUBLISHER = textwrap.dedent(
    """
    import os, sys, time
    from app import realtime
    from app.config import load_settings
    settings = load_settings()
    for i in range(int(sys.argv[2])):
        realtime.publish(settings, sys.argv[1], {"i": i, "pid": os.getpid(), "t": "é"})
        time.sleep(0.05)
    """
)


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[str]:
    """The embedded amqtt broker, as ``smokehouse run`` starts it, on a free port."""
    port = free_port()
    process = subprocess.Popen(
        smokehouse_argv("mqtt-broker"),
        env=cli_env(data_dir=tmp_path / "broker", embedded_mqtt_port=port, log_format="console"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"mqtt://127.0.0.1:{port}"
    try:
        wait_for(lambda: tcp_open(url, port), 20, what="the embedded broker")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(params=["redis", "embedded"])
def live_settings(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Settings:
    if request.param == "redis":
        return settings_factory(redis_url=require_redis())
    url = request.getfixturevalue("embedded_broker")
    port = int(url.rsplit(":", 1)[1])
    return settings_factory(embedded_mqtt_port=port)  # no SMOKEHOUSE_MQTT_URL: embedded


def publisher(settings: Settings, channel: str, count: int = 200) -> subprocess.Popen[bytes]:
    env = cli_env(
        data_dir=settings.data_dir,
        embedded_mqtt_port=settings.embedded_mqtt_port,
        log_format="console",
        **({"redis_url": settings.redis_url} if settings.redis_url else {}),
    )
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, channel, str(count)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_message_from_another_process_reaches_every_local_subscriber(
    live_settings: Settings,
) -> None:
    channel = f"readings:test-{uuid.uuid4().hex[:8]}"

    async def scenario() -> list[dict[str, Any]]:
        first = realtime.subscribe(live_settings, channel)
        second = realtime.subscribe(live_settings, channel)
        async with aclosing(first), aclosing(second):
            one = asyncio.ensure_future(anext(first))
            two = asyncio.ensure_future(anext(second))
            await confirmed_channels(1)
            hubs = realtime._hubs[asyncio.get_running_loop()]
            assert len(hubs) == 1  # one connection for both subscribers
            process = publisher(live_settings, channel)
            try:
                got = await asyncio.wait_for(asyncio.gather(one, two), 20)
                more = await asyncio.wait_for(anext(first), 5)  # the stream goes on
            finally:
                process.kill()
                process.wait()
        return [*got, more]

    one, two, more = asyncio.run(scenario())
    assert one == two  # the same message, fanned out
    assert one["t"] == "é"
    assert isinstance(one["pid"], int)
    assert more["i"] > one["i"]
    assert realtime.active_channels() == 0


def test_a_cancelled_subscriber_leaves_nothing_subscribed(live_settings: Settings) -> None:
    channel = f"alarms:test-{uuid.uuid4().hex[:8]}"

    async def scenario() -> Any:
        stream = realtime.subscribe(live_settings, channel)
        waiting = asyncio.ensure_future(anext(stream))
        await confirmed_channels(1)
        waiting.cancel()  # a client that vanished: the task is cancelled at its await
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await confirmed_channels(0)
        hub = realtime._hubs[asyncio.get_running_loop()]
        return next(iter(hub.values()))

    hub = asyncio.run(scenario())
    assert realtime.active_channels() == 0
    assert hub.client is None  # the last subscriber closed the connection
    if live_settings.redis_url:
        client = redis.Redis.from_url(live_settings.redis_url)
        counts = client.pubsub_numsub(realtime.REDIS_PREFIX + channel)
        assert counts[0][1] == 0
        client.close()


def test_publish_never_raises(settings_factory: Callable[..., Settings]) -> None:
    closed = free_port()
    for settings in (
        settings_factory(redis_url=f"redis://127.0.0.1:{closed}/0"),
        settings_factory(mqtt_url=f"mqtt://127.0.0.1:{closed}"),
    ):
        before = realtime.DROPPED.labels(reason="transport_down")._value.get()
        realtime.publish(settings, "readings:x", {"i": 1})
        realtime.publish(settings, "readings:x", {"i": 2})  # in the back-off: no wait
        after = realtime.DROPPED.labels(reason="transport_down")._value.get()
        assert after - before == 2
    bad = settings_factory(redis_url=require_redis())
    realtime.publish(bad, "readings:x", {"not json": object()})
    realtime.publish(bad, "readings/+/x", {"i": 1})  # not a channel name
    with pytest.raises(ValueError, match="invalid live channel"):
        asyncio.run(anext(realtime.subscribe(bad, "readings:#")))
