"""The ``smokehouse`` command: ``run`` (everything, embedded) and one command per role."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from typing import Annotated, Any

import httpx
import typer

import app
import app.wiring
from app.backup.cli import backup, restore
from app.bus.cli import events_cli, rules_cli
from app.cli_support import command_settings, friendly_errors
from app.common.files import make_private_dir, use_private_umask
from app.config import Settings, load_settings
from app.iot.cli import ingest as iot_ingest
from app.iot.device_cli import device_cli
from app.iot.tls_cli import tls_cli
from app.logs import configure_logging
from app.queues.cli import queue_cli
from app.scaling.cli import scaling_cli

cli = typer.Typer(
    name="smokehouse",
    help="A self-hosted control plane: event bus, state machines, autoscaled workers, "
    "CI runners and a BBQ thermometer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings() -> Settings:
    return command_settings()


def _self_command() -> list[str]:
    return [sys.executable, "-m", "app.cli"]


@cli.command()
@friendly_errors
def run() -> None:
    """Everything in one command: API, embedded MQTT broker, autoscaled workers and scheduler."""
    from app.credentials import keyring_for
    from app.migrate import upgrade
    from app.preflight import check_database, check_embedded_mqtt_port, check_http_port
    from app.supervisor import Child, Supervisor

    settings = load_settings()
    configure_logging(settings.log_level, "console")
    make_private_dir(settings.data_dir)
    check_http_port(settings)
    check_embedded_mqtt_port(settings)
    check_database(settings)
    upgrade(settings.sqlalchemy_url)
    keys = keyring_for(settings)

    me = _self_command()
    children = [Child("api", [*me, "api", "--no-migrate"])]
    if settings.embedded_mqtt:
        children.insert(0, Child("mqtt", [*me, "mqtt-broker"]))
    # Workers are local processes the autoscaler starts and stops from queue depth (one pool per
    # queue); its Ctrl-C path stops them, and they die with it (PR_SET_PDEATHSIG) if it is killed.
    children += [
        Child("autoscaler", [*me, "scaling", "run"]),
        Child("scheduler", [*me, "scheduler"]),
        Child("ingest", [*me, "ingest"]),  # MQTT telemetry → the bus
    ]
    supervisor = Supervisor(children)
    started = time.monotonic()
    supervisor.start(
        env={**_embedded_scaling_env(), **os.environ, "SMOKEHOUSE_LOG_FORMAT": "console"}
    )

    ready = _wait_ready(settings.http_url, supervisor, timeout=30)
    mqtt_note = " (embedded)" if settings.embedded_mqtt else ""
    key = keys.first()
    shown = settings.masked()
    status = f"ready in {time.monotonic() - started:.1f}s" if ready else "NOT ready: see /readyz"
    typer.echo(
        f"\n  smokehouse {app.__version__} — {settings.mode} mode, {status}\n"
        f"  HTTP      {settings.http_url}   (GraphQL at /graphql, health at /readyz)\n"
        f"  MQTT      {settings.effective_mqtt_url}{mqtt_note}\n"
        f"  Database  {shown['database_url']}\n"
        f"  Broker    {shown['broker_url']}\n"
        + (
            f"  API key   {key.secret}   (admin, id {key.id}, kept in {settings.data_dir}/)\n"
            if key and not settings.configured_keys
            else ""
        )
        + "  Ctrl-C stops everything.\n"
    )
    raise typer.Exit(supervisor.wait())


def _embedded_scaling_env() -> dict[str, str]:
    """``run``'s autoscaler defaults (the environment overrides them): local worker processes for
    every queue, scaled to zero when idle. Minimum 0, not 1: six queues at one idle worker each
    would keep six workers and their pools idle on a laptop, while the scheduler's periodic
    tasks keep the ``default`` and ``bus`` pools warm anyway (the idle cooldown outlasts their
    interval) and a cold queue gets its first worker in a few seconds (1.9 s to the first task on
    Redis in bench/autoscale.py)."""
    from app.broker.queues import QUEUES

    return {
        "SMOKEHOUSE_SCALING_BACKEND": "process",
        "SMOKEHOUSE_SCALING_QUEUES": ",".join(QUEUES),
        "SMOKEHOUSE_SCALING_MIN_WORKERS": "0",
    }


def _wait_ready(url: str, supervisor: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(c.alive for c in supervisor.children):
        try:
            if httpx.get(f"{url}/readyz", timeout=3).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


@cli.command()
@friendly_errors
def api(
    migrate: Annotated[bool, typer.Option(help="Apply migrations at start.")] = True,
    workers: Annotated[int, typer.Option(min=1, help="Uvicorn worker processes.")] = 1,
) -> None:
    """The HTTP API: AWS-compatible endpoint, webhooks, GraphQL, health."""
    import uvicorn

    from app.credentials import keyring_for
    from app.migrate import upgrade
    from app.preflight import check_database, check_http_port, check_schema

    settings = _settings()
    check_http_port(settings)
    check_database(settings)
    keyring_for(settings)
    if migrate:
        upgrade(settings.sqlalchemy_url)
    else:
        check_schema(settings)
    os.environ["SMOKEHOUSE_AUTO_MIGRATE"] = "false"
    if workers > 1:
        # One /metrics for all the processes: prometheus-client's multiprocess mode, in a
        # directory of this run only (the worker processes inherit it; see app.health.routes).
        metrics_dir = settings.data_dir / "prometheus-api"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, mode=0o700)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


@cli.command()
@friendly_errors
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = "",
    concurrency: Annotated[int, typer.Option(min=0, help="Pool size (0: from settings).")] = 0,
) -> None:
    """A Celery worker (acks late, prefetch 1) consuming the named queues."""
    from app.broker.celery import create_celery, load_worker_app, node_name
    from app.broker.queues import QUEUES
    from app.preflight import check_schema

    load_worker_app()
    settings = _settings()
    check_schema(settings)
    celery = create_celery(settings)
    argv = [
        "worker",
        f"--hostname={node_name(settings.worker.id, os.getpid())}",
        f"--queues={queues or ','.join(QUEUES)}",
        f"--concurrency={concurrency or settings.worker.concurrency}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    celery.worker_main(argv)


@cli.command()
@friendly_errors
def scheduler() -> None:
    """The periodic scheduler (Celery beat): pings, sweeps, reconcile loops. Run as many as you
    like: the one holding the scheduler lease sends, the others stand by (app.broker.beat)."""
    from app.broker.celery import create_celery, load_worker_app
    from app.preflight import check_schema

    load_worker_app()
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    check_schema(settings)
    celery = create_celery(settings)
    celery.Beat(loglevel=settings.log_level).run()


@cli.command("mqtt-broker")
@friendly_errors
def mqtt_broker() -> None:
    """The embedded MQTT broker (amqtt), as started by `run` when SMOKEHOUSE_MQTT_URL is unset."""
    import asyncio

    from app.iot.embedded_broker import serve
    from app.preflight import check_embedded_mqtt_port

    settings = _settings()
    check_embedded_mqtt_port(settings)
    asyncio.run(serve(settings.embedded_mqtt_port))


@cli.command()
@friendly_errors
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    from app.migrate import current_revision, upgrade
    from app.preflight import check_database

    settings = _settings()
    check_database(settings)
    upgrade(settings.sqlalchemy_url)
    typer.echo(f"database at revision {current_revision(settings.sqlalchemy_url)}")


@cli.command()
@friendly_errors
def health(
    role: Annotated[
        str, typer.Argument(help="api, worker, scheduler, ingest or autoscaler")
    ] = "api",
) -> None:
    """Exit 0 if this container's role is healthy (used by Docker HEALTHCHECKs)."""
    import socket
    from datetime import timedelta

    settings = load_settings()
    if role == "api":
        url = f"http://127.0.0.1:{settings.http_port}/healthz"
        healthy = httpx.get(url, timeout=3).status_code == 200
    elif role == "worker":
        from app.broker.celery import create_celery, on_host

        # Node names are unique per worker process (see node_name); any worker of this host
        # (container) that answers proves it consumes.
        replies = create_celery(settings).control.ping(timeout=3) or []
        healthy = any(on_host(node, socket.gethostname()) for r in replies for node in r)
    elif role == "scheduler":
        from app.db import get_database, utcnow
        from app.system.service import last_ping

        with get_database(settings.sqlalchemy_url).session() as session:
            ping = last_ping(session)
        # The scheduler sends a ping every 30 s; a fresh one proves it (and a worker) runs.
        healthy = ping is not None and utcnow() - ping.sent_at < timedelta(seconds=120)
    elif role == "ingest":
        # Its metrics port answers, and it has not been failing to store a batch for 30 s
        # (the database away: it retries without acking, and says so here).
        url = f"http://127.0.0.1:{settings.iot.metrics_port}/metrics"
        found = re.search(
            r"^smokehouse_iot_store_failing_seconds ([0-9.e+]+)$",
            httpx.get(url, timeout=3).text,
            re.M,
        )
        healthy = found is not None and float(found.group(1)) < 30
    elif role == "autoscaler":
        from sqlalchemy import func, select

        from app.db import get_database, utcnow
        from app.scaling.models import ScalingQueue

        # Some autoscaler passed a queue within three intervals (a standby's passes are
        # skipped under the lease while another passes: the function is what is healthy).
        with get_database(settings.sqlalchemy_url).session() as session:
            last = session.scalar(select(func.max(ScalingQueue.updated_at)))
        window = timedelta(seconds=3 * settings.scaling.interval_seconds + 10)
        healthy = last is not None and utcnow() - last < window
    else:
        raise typer.BadParameter("role must be api, worker, scheduler, ingest or autoscaler")
    raise typer.Exit(0 if healthy else 1)


@cli.command()
@friendly_errors
def config() -> None:
    """Print the effective configuration, secrets masked."""
    typer.echo(json.dumps(load_settings().masked(), indent=2))


@cli.command()
@friendly_errors
def session(
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Which access key (default: the first).")
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(min=60, help="Lifetime in seconds (default SMOKEHOUSE_SESSION_TTL_SECONDS)."),
    ] = None,
) -> None:
    """Print a session token for scripts (send it as ``Authorization: Bearer <token>`` to GraphQL
    and the work-queue routes): the access key's secret never has to travel."""
    from app.auth import issue_session
    from app.credentials import keyring_for

    settings = load_settings()
    keys = keyring_for(settings)
    key = keys.by_id(key_id) if key_id else keys.first()
    if key is None:
        raise typer.BadParameter(f"no access key {key_id!r}", param_hint="--key-id")
    typer.echo(issue_session(key, ttl_seconds=ttl or settings.session_ttl_seconds))


cli.add_typer(rules_cli)
cli.add_typer(events_cli)
cli.add_typer(queue_cli)
cli.add_typer(scaling_cli)
cli.add_typer(device_cli)
cli.add_typer(tls_cli)
cli.command("backup")(backup)
cli.command("restore")(restore)
cli.command("ingest")(iot_ingest)


def main() -> None:
    # Data-dir files 0600, directories 0700 (app.common.files); every role starts here.
    use_private_umask()
    cli()


if __name__ == "__main__":
    main()
