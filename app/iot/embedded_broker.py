"""The embedded MQTT broker (amqtt) for ``make run``: no Mosquitto needed on a laptop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from amqtt.broker import Broker

log = logging.getLogger("smokehouse.mqtt")


def broker_config(port: int, host: str = "127.0.0.1") -> dict[str, object]:
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 1000}
        },
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve(port: int, host: str = "127.0.0.1") -> None:
    """Run until SIGINT/SIGTERM, then shut the broker down cleanly."""
    broker = Broker(broker_config(port, host))
    await broker.start()
    log.info("embedded MQTT broker listening", extra={"url": f"mqtt://{host}:{port}"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await broker.shutdown()
