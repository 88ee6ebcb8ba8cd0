"""``smokehouse backup [FILE]`` and ``smokehouse restore FILE`` (``-``: stdout / stdin)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from app.cli_support import command_settings, friendly_errors


@friendly_errors
def backup(
    file: Annotated[
        str,
        typer.Argument(
            help="Where to write it; '-' for stdout (default: smokehouse-backup-<UTC time>.tar.gz)."
        ),
    ] = "",
) -> None:
    """Back up the database (pg_dump, or SQLite's online backup) with the data dir's keys,
    certificates and Mosquitto files, while the system runs. The archive holds every secret."""
    from app.backup.archive import write_backup
    from app.preflight import check_database

    settings = command_settings()
    check_database(settings)
    if file == "-":
        manifest = write_backup(settings, sys.stdout.buffer)
        typer.echo(f"backed up revision {manifest.revision} to stdout", err=True)
        return
    target = Path(file or f"smokehouse-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar.gz")
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "xb") as out:  # 0600 under the process's umask 077
            manifest = write_backup(settings, out)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(f"backed up revision {manifest.revision} ({manifest.database}) to {target}")


@friendly_errors
def restore(
    file: Annotated[str, typer.Argument(help="A `smokehouse backup` archive; '-' for stdin.")],
    force: Annotated[
        bool, typer.Option(help="Replace an instance that already holds data.")
    ] = False,
) -> None:
    """Restore a backup into a fresh instance (stop the api, worker, scheduler and ingest
    first), then migrate it to this release's schema."""
    from app.backup.archive import restore_backup
    from app.preflight import check_database

    settings = command_settings()
    check_database(settings)
    if file == "-":
        done = restore_backup(settings, sys.stdin.buffer, force=force)
    else:
        with open(file, "rb") as source:
            done = restore_backup(settings, source, force=force)
    typer.echo(
        f"restored a backup of {done['created_at']} (smokehouse {done['made_by']}, revision "
        f"{done['from_revision']}); the database is at revision {done['revision']}"
        + (f"; files: {', '.join(done['files'])}" if done["files"] else "")
    )
