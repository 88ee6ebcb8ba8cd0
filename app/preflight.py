"""Start-up checks that turn a bad environment into one line naming the setting to fix."""

from __future__ import annotations

import errno
import logging
import socket
import time

from sqlalchemy.exc import SQLAlchemyError

from app.config import ConfigError, Settings
from app.db import get_database

log = logging.getLogger(__name__)


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_http_port(settings: Settings) -> None:
    if port_in_use(settings.http_host, settings.http_port):
        raise ConfigError(
            "SMOKEHOUSE_HTTP_PORT",
            f"{settings.http_host}:{settings.http_port} is already in use; "
            "stop what listens there or choose another port",
        )


def check_embedded_mqtt_port(settings: Settings) -> None:
    port = settings.embedded_mqtt_port
    if settings.embedded_mqtt and port_in_use("127.0.0.1", port):
        raise ConfigError(
            "SMOKEHOUSE_EMBEDDED_MQTT_PORT",
            f"port {port} is taken (another MQTT broker?): use it with "
            f"SMOKEHOUSE_MQTT_URL=mqtt://127.0.0.1:{port}, or move the embedded broker with "
            "SMOKEHOUSE_EMBEDDED_MQTT_PORT=<free port>",
        )


def check_database(settings: Settings) -> None:
    """The database answers, waiting up to ``database_wait_seconds`` for a server that is still
    starting (a compose stack comes up all at once); SQLite opens or fails at once."""
    embedded = settings.mode == "embedded"
    if embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (0 if embedded else settings.database_wait_seconds)
    while True:
        try:
            get_database(settings.sqlalchemy_url).ping()
            return
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            if time.monotonic() >= deadline:
                setting = "SMOKEHOUSE_" + ("DATABASE_URL" if settings.database_url else "DATA_DIR")
                raise ConfigError(setting, f"cannot open the database: {reason}") from None
            log.info("waiting for the database", extra={"reason": reason})
            time.sleep(1)


def check_schema(settings: Settings) -> None:
    """A role that does not migrate starts only on this code's schema (app.migrate)."""
    from app.migrate import wait_for_schema

    check_database(settings)
    wait_for_schema(settings.sqlalchemy_url, settings.database_wait_seconds)
