"""``smokehouse rules …`` and ``smokehouse events …``: the bus from a terminal, straight to the DB.

Exit codes are for scripts: ``rules test`` exits 0 on a match, 1 on none and 2 on an invalid
pattern; everything else exits 1 on a bus error (bad definitions, unknown bus, a failed entry) and
2 on bad configuration or input, always with one line on stderr rather than a traceback.

This module does not import :mod:`app.cli` (which mounts it): under ``python -m app.cli`` that
would import the root command a second time, half-initialised. Its two helpers are mirrored here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from app.bus.arns import DEFAULT_BUS, Scope
from app.cli_support import command_settings, fail, friendly_errors
from app.config import Settings

rules_cli = typer.Typer(
    name="rules",
    help="Event bus rules: apply YAML definitions, list them, test a pattern.",
    no_args_is_help=True,
)
events_cli = typer.Typer(name="events", help="Put events on a bus.", no_args_is_help=True)


def _settings() -> Settings:
    """Settings and logging as every command sets them up, and a database at the newest schema
    (so the bus commands work on a fresh embedded data dir)."""
    from app.handlers import load_handler_modules
    from app.migrate import upgrade
    from app.preflight import check_database

    settings = command_settings()
    check_database(settings)
    if settings.auto_migrate:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # not news on every command
        upgrade(settings.sqlalchemy_url)
    load_handler_modules(settings.handler_module_list)
    return settings


def _json_argument(value: str, what: str) -> Any:
    """JSON text, or ``@path`` to read it from a file."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"{what}: cannot read {value[1:]}: {exc.strerror}", 2) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise fail(f"{what} is not valid JSON: {exc}", 2) from None


# --- rules --------------------------------------------------------------------------------


@rules_cli.command("apply")
@friendly_errors
def rules_apply(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="YAML files or directories (default: shipped + your definitions)."),
    ] = None,
) -> None:
    """Validate and apply rule definitions; unchanged rules are not rewritten."""
    from app.bus.definitions import apply_definitions, definition_paths
    from app.db import get_database

    settings = _settings()
    chosen = list(paths) if paths else definition_paths(settings)
    with get_database(settings.sqlalchemy_url).session() as session:
        report = apply_definitions(session, chosen)
    for outcome in ("created", "updated", "deleted"):
        for name in getattr(report, outcome):
            typer.echo(f"{outcome:9} {name}")
    for bus in report.buses_created:
        typer.echo(f"{'bus':9} {bus} created")
    typer.echo(report.summary())


@rules_cli.command("list")
@friendly_errors
def rules_list(
    bus: Annotated[str | None, typer.Option(help="Only this bus (default: every bus).")] = None,
) -> None:
    """One line per rule: bus/name, state, targets, who manages it."""
    from sqlalchemy import select

    from app.bus.models import Rule
    from app.bus.service import get_bus
    from app.db import get_database

    settings = _settings()
    with get_database(settings.sqlalchemy_url).session() as session:
        statement = select(Rule).order_by(Rule.bus_name, Rule.name)
        if bus is not None:
            statement = statement.where(Rule.bus_name == get_bus(session, bus).name)
        rows = [
            (
                f"{r.bus_name}/{r.name}",
                r.state,
                ",".join(t.target_id for t in r.targets) or "-",
                (r.managed_by or "api").removeprefix("definitions:"),
            )
            for r in session.scalars(statement)
        ]
    if not rows:
        typer.echo("no rules")
        return
    header = ("RULE", "STATE", "TARGETS", "MANAGED BY")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    for row in (header, *rows):
        padded = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        typer.echo("  ".join([*padded, row[3]]))


@rules_cli.command("test")
@friendly_errors
def rules_test(
    pattern: Annotated[str, typer.Argument(help="Event pattern: JSON text or @file.")],
    event: Annotated[str, typer.Argument(help="Event: JSON text or @file.")],
) -> None:
    """Does the event match the pattern? Prints match (exit 0) or no match (exit 1)."""
    from app.bus.patterns import InvalidEventPattern, test_event_pattern

    pattern_text = pattern
    if pattern.startswith("@"):
        try:
            pattern_text = Path(pattern[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"pattern: cannot read {pattern[1:]}: {exc.strerror}", 2) from None
    document = _json_argument(event, "event")
    if not isinstance(document, dict):
        raise fail("event must be a JSON object", 2)
    try:
        matched = test_event_pattern(pattern_text, document)
    except InvalidEventPattern as exc:
        typer.echo(exc.message, err=True)  # AWS's InvalidEventPatternException text, verbatim
        raise typer.Exit(2) from None
    typer.echo("match" if matched else "no match")
    raise typer.Exit(0 if matched else 1)


# --- events -------------------------------------------------------------------------------


@events_cli.command("put")
@friendly_errors
def events_put(
    source: Annotated[str, typer.Option(help="The event's source, e.g. smokehouse.test.")],
    detail_type: Annotated[str, typer.Option(help="The event's detail-type.")],
    detail: Annotated[str, typer.Option(help="The detail: a JSON object, or @file.")] = "{}",
    bus: Annotated[str, typer.Option(help="Event bus name or ARN.")] = DEFAULT_BUS,
    resource: Annotated[list[str] | None, typer.Option(help="A resource ARN (repeatable).")] = None,
) -> None:
    """PutEvents one event: stored and routed in one transaction, then its deliveries queued.
    Prints the event id; exit 1 with the entry's error code if it was rejected."""
    from app.bus.events import put_events
    from app.db import get_database

    settings = _settings()
    detail_text = json.dumps(_json_argument(detail, "detail")) if detail.startswith("@") else detail
    entry: dict[str, Any] = {
        "Source": source,
        "DetailType": detail_type,
        "Detail": detail_text,
        "EventBusName": bus,
    }
    if resource:
        entry["Resources"] = list(resource)
    with get_database(settings.sqlalchemy_url).session() as session:
        scope = Scope(settings.region, settings.account_id)
        result = put_events(session, [entry], scope, settings=settings)  # enqueued after commit
    failed = False
    for item in result.entries:
        if "ErrorCode" in item:
            failed = True
            typer.secho(
                f"smokehouse: error: {item['ErrorCode']}: {item['ErrorMessage']}",
                err=True,
                fg=typer.colors.RED,
            )
        else:
            typer.echo(item["EventId"])
    if failed:
        raise typer.Exit(1)
