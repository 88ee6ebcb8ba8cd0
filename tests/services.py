"""Real services for integration tests: find them, make per-run databases, start a Mosquitto.

Locally a missing service skips its tests; under ``CI=true`` it fails them, so a broken CI
machine cannot pass by skipping. URLs can be overridden with ``SMOKEHOUSE_TEST_*`` variables.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent

POSTGRES_ADMIN_URL = os.environ.get(
    "SMOKEHOUSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SMOKEHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("SMOKEHOUSE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def unavailable(what: str) -> None:
    """Skip locally, fail under CI."""
    if CI:
        pytest.fail(f"{what} is required under CI=true but is not available")
    pytest.skip(f"{what} not available")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcp_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def wait_for(predicate: object, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the test PostgreSQL, dropped afterwards."""
    if not tcp_open(POSTGRES_ADMIN_URL, 5432):
        unavailable("PostgreSQL")
    from sqlalchemy import create_engine, text

    name = f"smokehouse_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(POSTGRES_ADMIN_URL)
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        from app.db import _databases

        for url in [u for u in _databases if name in u]:
            _databases.pop(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def require_redis() -> str:
    if not tcp_open(REDIS_URL, 6379):
        unavailable("Redis")
    return REDIS_URL


def require_rabbitmq() -> str:
    if not tcp_open(RABBITMQ_URL, 5672):
        unavailable("RabbitMQ")
    return RABBITMQ_URL


@contextmanager
def mosquitto(tmp_path: Path) -> Iterator[str]:
    """A Mosquitto of our own, with the project's config, on a free port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        unavailable("mosquitto")
    port = free_port()
    shipped = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    kept = [
        line for line in shipped if not line.startswith(("listener", "persistence", "log_dest"))
    ]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join([*kept, f"listener {port} 127.0.0.1", "persistence false", ""]))
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"mqtt://127.0.0.1:{port}"
    try:
        wait_for(lambda: tcp_open(url, port), 10, what="mosquitto to listen")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """moto's server on a free port (a real HTTP AWS endpoint), with AWS's standard variables
    pointing boto3 at it for as long as it runs; yields those variables."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield env
    finally:
        server.stop()
