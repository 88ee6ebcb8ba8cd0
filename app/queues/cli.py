"""``smokehouse queue …``: work queues from a shell.

``queue send`` stores messages for a registered handler or a state machine and puts them on a
work queue (what a producer does); ``queue depth`` shows what waits. Like :mod:`app.bus.cli` this
module does not import :mod:`app.cli`, and configuration mistakes end with one line (exit 2),
not a traceback.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli_support import command_settings, friendly_errors

queue_cli = typer.Typer(
    name="queue", help="Work queues: send messages, see depth.", no_args_is_help=True
)


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
    settings = command_settings()
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

    settings = command_settings()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    found = probe(settings.celery_broker_url, names)
    typer.echo(json.dumps({q: {"ready": d.ready, "unacked": d.unacked} for q, d in found.items()}))
