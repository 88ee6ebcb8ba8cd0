"""``smokehouse queue …`` and ``smokehouse scaling …``: work queues and the autoscaler from a shell.

``queue send`` stores messages for a registered handler or a state machine and puts them on a
work queue (what a producer does);
``queue depth`` shows what waits; ``scaling run`` is the autoscaler loop, ``scaling once`` one pass,
``scaling workers`` the registry. Like :mod:`app.bus.cli` this module does not import
:mod:`app.cli`, and configuration mistakes end with one line (exit 2), not a traceback.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli_support import command_settings, friendly_errors
from app.config import Settings

queue_cli = typer.Typer(
    name="queue", help="Work queues: send messages, see depth.", no_args_is_help=True
)
scaling_cli = typer.Typer(
    name="scaling", help="The autoscaler and the worker registry.", no_args_is_help=True
)


def _settings() -> Settings:
    return command_settings()


@queue_cli.command("send")
@friendly_errors
def send(
    queue: Annotated[str, typer.Argument(help="The work queue, e.g. default.")],
    handler: Annotated[
        str | None, typer.Argument(help="A registered handler's name (or --state-machine).")
    ] = None,
    payload: Annotated[str, typer.Option(help="The JSON payload the handler gets.")] = "null",
    count: Annotated[int, typer.Option(min=1, max=100_000, help="How many messages.")] = 1,
    mode: Annotated[
        str, typer.Option(help="sync (store the result) or async (wait for a task token).")
    ] = "sync",
    state_machine: Annotated[
        str | None, typer.Option(help="Start this state machine (name or ARN) instead.")
    ] = None,
) -> None:
    """Store COUNT messages that run HANDLER (or a state machine) with PAYLOAD, then enqueue
    them; prints one message id (= task id) per line."""
    from app.handlers import load_handler_modules
    from app.queues.messages import MessageError, send_and_enqueue

    try:
        body = json.loads(payload)
    except ValueError as exc:
        typer.secho(f"smokehouse: error: --payload is not JSON: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    settings = _settings()
    load_handler_modules(settings.handler_module_list)
    try:
        ids = send_and_enqueue(
            settings,
            queue,
            handler=handler,
            state_machine=state_machine,
            payload=body,
            mode=mode,
            count=count,
        )
    except MessageError as exc:
        typer.secho(f"smokehouse: error: {exc.reason}", err=True, fg="red")
        raise typer.Exit(2) from None
    for message_id in ids:
        typer.echo(message_id)


@queue_cli.command("depth")
@friendly_errors
def depth(
    queues: Annotated[str, typer.Argument(help="Comma-separated queues.")] = "default",
) -> None:
    """Ready and unacked messages per queue, as JSON."""
    from app.scaling.depth import probe

    settings = _settings()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    found = probe(settings.celery_broker_url, names)
    typer.echo(json.dumps({q: {"ready": d.ready, "unacked": d.unacked} for q, d in found.items()}))


@scaling_cli.command("once")
@friendly_errors
def once() -> None:
    """One autoscaler pass; prints each queue's decision as JSON."""
    from app.scaling.autoscaler import Autoscaler

    for outcome in Autoscaler.from_settings(_settings()).run_once():
        typer.echo(
            json.dumps(
                {
                    "queue": outcome.queue,
                    "previous": outcome.previous,
                    "desired": outcome.decision.desired,
                    "reason": outcome.decision.reason,
                    "demand": outcome.observation.demand,
                    "error": outcome.error,
                }
            )
        )


@scaling_cli.command("run")
@friendly_errors
def run() -> None:
    """The autoscaler loop (until SIGTERM/Ctrl-C): every interval, and at once on new work."""
    import signal
    import threading

    from app.scaling.autoscaler import Autoscaler
    from app.scaling.backends.process import ProcessBackend

    autoscaler = Autoscaler.from_settings(_settings())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        autoscaler.serve(stop)
    finally:
        if isinstance(autoscaler.backend, ProcessBackend):
            # Local workers do not outlive their loop. Warm shutdown first, then SIGKILL, within
            # `smokehouse run`'s 15 s grace (a killed worker's unacked message is redelivered).
            autoscaler.backend.terminate_all(timeout=10)


@scaling_cli.command("workers")
@friendly_errors
def workers() -> None:
    """The worker registry: one JSON line per worker, newest first."""
    from sqlalchemy import select

    from app.db import get_database
    from app.scaling.models import ScalingWorker

    settings = _settings()
    with get_database(settings.sqlalchemy_url).session() as session:
        rows = session.scalars(select(ScalingWorker).order_by(ScalingWorker.started_at.desc()))
        for w in rows:
            typer.echo(
                json.dumps(
                    {
                        "id": w.id,
                        "state": w.state,
                        "queues": w.queues,
                        "current_task": w.current_task,
                        "heartbeat_at": w.heartbeat_at.isoformat(),
                        "backend": w.backend,
                    }
                )
            )
