"""Real services for integration tests: find them, make per-run databases, start a Mosquitto.

Locally a missing service skips its tests; under ``CI=true`` it fails them, so a broken CI
machine cannot pass by skipping. URLs can be overridden with ``SMOKEHOUSE_TEST_*`` variables.

Migrated databases are copies of a template migrated once per test process (PostgreSQL
``CREATE DATABASE … TEMPLATE``, a copied SQLite file): ten Alembic revisions per test were most
of a database test's set-up. Under pytest-xdist every worker has its own template, its own Redis
database and its own names, so workers never share state.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent
#: ``gw0``, ``gw1``… under pytest-xdist, ``""`` in a plain run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0

POSTGRES_ADMIN_URL = os.environ.get(
    "SMOKEHOUSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def worker_redis_url(url: str, index: int = WORKER_INDEX) -> str:
    """The Redis database of one xdist worker: the configured one, then the ones below it
    (15, 14, 13… by default), so parallel workers never read each other's keys or queues."""
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    return parts._replace(path=f"/{(number - index) % 16}").geturl()


REDIS_URL = worker_redis_url(
    os.environ.get("SMOKEHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)
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


#: Below Linux's ephemeral range (32768-60999), one slice per xdist worker.
_SERVICE_PORTS = range(20000 + 1500 * (WORKER_INDEX % 8), 21500 + 1500 * (WORKER_INDEX % 8))


def service_port() -> int:
    """A free port for settings that *name* a port of smokehouse's own (API, embedded MQTT)
    without binding it yet. Taken below the ephemeral range, so a test server binding port 0
    can never be handed the same number meanwhile (the egress policy refuses smokehouse's own
    ports, and such a collision made a test's own server look like one)."""
    for _ in range(200):
        port = random.choice(_SERVICE_PORTS)
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free service port below the ephemeral range")


def tcp_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


#: How long a test waits for ``smokehouse run`` to answer /readyz. Quiet, it is ready in ~4 s;
#: under CI's slow set on a two-core machine three times slower than that, one start took 18 s
#: and two took over 30 s (their first log line came 25 s after launch: Python's imports starved
#: of CPU, not a hang). Every role is its own process importing the app.
RUN_READY_SECONDS = 90


def wait_for(predicate: object, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def _postgres_url(name: str) -> str:
    return urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}").geturl()


def _dispose_engines(name: str) -> None:
    """Close this process's pooled connections to a database (a template must have none)."""
    from app.db import _databases

    for url in [u for u in _databases if name in u]:
        _databases.pop(url).dispose()


class _Templates:
    """One migrated template per kind and test process, made on first use, removed at exit."""

    def __init__(self) -> None:
        self.postgres: str | None = None
        self.sqlite: Path | None = None
        self.sqlite_dir: str | None = None

    def postgres_name(self, admin: Any) -> str:
        if self.postgres is None:
            from sqlalchemy import text

            from app.migrate import upgrade

            name = f"smokehouse_template_{uuid.uuid4().hex[:10]}"
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            atexit.register(_drop_postgres, name)
            upgrade(_postgres_url(name))  # Alembic's env.py disposes its engine
            _dispose_engines(name)
            self.postgres = name
        return self.postgres

    def sqlite_file(self) -> Path:
        if self.sqlite is None:
            from app.migrate import upgrade

            self.sqlite_dir = tempfile.mkdtemp(prefix="smokehouse-template-")
            atexit.register(shutil.rmtree, self.sqlite_dir, True)
            path = Path(self.sqlite_dir) / "migrated.db"
            upgrade(f"sqlite:///{path}")
            _dispose_engines(str(path))
            self.sqlite = path
        return self.sqlite


_templates = _Templates()


def _drop_postgres(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def postgres_database(migrated: bool = False) -> Iterator[str]:
    """A fresh database on the test PostgreSQL, dropped afterwards: empty, or with
    ``migrated=True`` a copy of the migrated template (at head, no rows)."""
    if not tcp_open(POSTGRES_ADMIN_URL, 5432):
        unavailable("PostgreSQL")
    from sqlalchemy import create_engine, text

    name = f"smokehouse_test_{WORKER or 'main'}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    template = f' TEMPLATE "{_templates.postgres_name(admin)}"' if migrated else ""
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{template}'))
    try:
        yield _postgres_url(name)
    finally:
        _dispose_engines(name)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrated_sqlite(path: Path) -> str:
    """A migrated, empty SQLite database at ``path`` (a copy of the template); its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_templates.sqlite_file(), path)
    return f"sqlite:///{path}"


def migrate(url: str) -> None:
    """``app.migrate.upgrade`` for tests: a SQLite file not created yet becomes a copy of the
    template; anything else is upgraded in place (a no-op for a database made from a template)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.exists() or path.stat().st_size == 0:
            migrated_sqlite(path)
            return
    from app.migrate import upgrade

    upgrade(url)


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


#: The ClientToken moto records when a RunInstances call gives none.
MOTO_NO_TOKEN = "ABCDE"


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """moto's server on a free port (a real HTTP AWS endpoint), with AWS's standard variables
    pointing boto3 at it for as long as it runs; yields those variables.

    One correction makes it EC2: RunInstances honours ``ClientToken`` (moto ignores it). EC2
    answers a repeated token with the instances the first call launched -- which is what makes
    botocore's own retry of a RunInstances whose answer was lost (a reset keep-alive
    connection) safe, and smokehouse relies on it. Without it, such a retry launched a second
    instance for one runner (seen once per run in the spot-interruption end-to-end test)."""
    from moto.ec2.models.instances import InstanceBackend
    from moto.server import ThreadedMotoServer

    launch = InstanceBackend.run_instances

    def idempotent(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = kwargs.get("client_token")
        if token and token != MOTO_NO_TOKEN:
            for reservation in self.reservations.values():
                if any(i.client_token == token for i in reservation.instances):
                    return reservation
        return launch(self, *args, **kwargs)

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
            patch.setattr(InstanceBackend, "run_instances", idempotent)
            for name, value in env.items():
                patch.setenv(name, value)
            yield env
    finally:
        server.stop()


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """An ASGI app under a real uvicorn in a thread, on a free loopback port; its base URL.
    The socket is bound before the server starts, so the URL is right the moment it is given."""
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 20, what="uvicorn to start")
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
