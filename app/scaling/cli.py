"""``smokehouse scaling …``: the autoscaler from a shell.

``scaling run`` is the autoscaler loop, ``scaling once`` one pass, ``scaling workers`` the
registry, ``scaling exec`` a program of yours run as a registered worker of a pool. Like
:mod:`app.bus.cli` this module does not import :mod:`app.cli`, and configuration
mistakes end with one line (exit 2), not a traceback.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli_support import command_settings, friendly_errors

scaling_cli = typer.Typer(
    name="scaling", help="The autoscaler and the worker registry.", no_args_is_help=True
)


@scaling_cli.command("once")
@friendly_errors
def once() -> None:
    """One autoscaler pass; prints each queue's decision as JSON."""
    from app.scaling.autoscaler import Autoscaler

    for outcome in Autoscaler.from_settings(command_settings()).run_once():
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

    autoscaler = Autoscaler.from_settings(command_settings())
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


@scaling_cli.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
@friendly_errors
def exec_(
    pool: Annotated[str, typer.Option(help="The pool this program works for.")],
    command: Annotated[list[str], typer.Argument(help="The program and its arguments.")],
) -> None:
    """Run a program (an SQS poller) as a registered worker of POOL until it exits.

    The process backend starts pools named in SMOKEHOUSE_SCALING_COMMANDS this way.
    """
    from app.scaling.registered import run_registered

    raise typer.Exit(run_registered(command_settings(), pool, command))


@scaling_cli.command("workers")
@friendly_errors
def workers() -> None:
    """The worker registry: one JSON line per worker, newest first."""
    from sqlalchemy import select

    from app.db import get_database
    from app.scaling.models import ScalingWorker

    settings = command_settings()
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
