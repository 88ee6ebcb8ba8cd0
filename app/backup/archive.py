"""``smokehouse backup`` / ``restore``: one archive holds the database and the data dir's keys.

The archive is a gzip'd tar with ``manifest.json`` first (format, smokehouse version, schema
revision, database kind), then the database (``database.pgdump``: ``pg_dump`` custom format;
or ``smokehouse.db``: SQLite's online backup, consistent while the system runs), then the files
that make the data readable and the devices able to connect: the secret-key and access-key
files, ``tls/`` and Mosquitto's password/ACL files, where they exist. It holds every secret the
instance has: it is written ``0600``; keep it as you keep the data dir.

A restore goes into a fresh instance (one that holds nothing but what migrations create; or
``--force``), with the roles that write stopped: the database is replaced, the files are put
back, and migrations bring an older backup up to this code's head. A backup from a newer
release is refused, as a newer database is (app.migrate).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

import app
from app.config import Settings
from app.db import get_database
from app.migrate import current_revision, known_revisions, upgrade

FORMAT = "smokehouse-backup"
VERSION = 1
#: What an instance writes for itself from its first start, idle (leases, pings, the autoscaler's
#: bookkeeping and its events, scheduled ticks, the shipped rules and state machines, the default
#: bus), and rows that only exist beside a user's own (a delivery beside its event, a rule's
#: targets): not a user's data, so a restore may replace them without --force.
NOT_USER_DATA = frozenset(
    {
        "alembic_version",
        "leases",
        "pings",
        "scaling_queues",
        "scaling_workers",
        "scaling_decisions",
        "targets",
        "state_machine_definitions",
        "deliveries",
        "delivery_attempts",
    }
)
USER_ROWS_WHERE = {
    "rules": "managed_by IS NULL",
    "state_machines": "managed_by IS NULL",
    "event_buses": "name <> 'default'",
    "schedule_groups": "name <> 'default'",
    # smokehouse.* (the autoscaler's decisions, the runners' reconcile) and aws.* (scheduled
    # ticks) are the instance's own sources.
    "events": "source NOT LIKE 'smokehouse.%' AND source NOT LIKE 'aws.%'",
}
#: Data-dir files and directories that belong in a backup (caches, logs and the embedded
#: broker's spool do not: in-flight tasks are rebuilt from the database's outbox sweeps).
DATA_FILES = ("secret-key", "access-key", "tls")


class BackupError(ValueError):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    revision: str
    database: str
    smokehouse: str
    created_at: str

    def to_json(self) -> bytes:
        return json.dumps(
            {"format": FORMAT, "version": VERSION, **self.__dict__}, indent=2
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise KeyError("format")
            return cls(data["revision"], data["database"], data["smokehouse"], data["created_at"])
        except (ValueError, KeyError, TypeError):
            raise BackupError(
                "not a smokehouse backup (its manifest is missing or unreadable)"
            ) from None


def _kind(settings: Settings) -> str:
    return "sqlite" if settings.mode == "embedded" else "postgresql"


def _libpq_env(url: str) -> dict[str, str]:
    """libpq's environment for ``pg_dump``/``pg_restore``: the password never goes on a command
    line (``ps`` shows those to every user of the host)."""
    parsed = make_url(url)
    env = {**os.environ, "PGDATABASE": parsed.database or "", "PGUSER": parsed.username or ""}
    if parsed.host:
        env["PGHOST"] = parsed.host
    if parsed.port:
        env["PGPORT"] = str(parsed.port)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    env.update({f"PG{k.upper()}": str(v) for k, v in parsed.query.items() if k == "sslmode"})
    return env


def _run(argv: list[str], env: dict[str, str]) -> None:
    tool = shutil.which(argv[0])
    if tool is None:
        raise BackupError(f"{argv[0]} is not installed (Debian: apt-get install postgresql-client)")
    done = subprocess.run([tool, *argv[1:]], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed: {done.stderr.strip().splitlines()[-1:]}")


def _data_paths(settings: Settings) -> dict[str, Path]:
    """Archive name → path on this instance, for the files a backup carries."""
    prov = settings.iot.provisioning
    paths = {f"data/{name}": settings.data_dir / name for name in DATA_FILES}
    paths["mosquitto/passwd"] = prov.password_file(settings)
    paths["mosquitto/acl"] = prov.acl_file(settings)
    return paths


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def write_backup(settings: Settings, out: IO[bytes]) -> Manifest:
    """Write the archive to ``out``; the database is read consistently while the system runs."""
    url = settings.sqlalchemy_url
    revision = current_revision(url)
    if revision is None:
        raise BackupError("the database was never migrated: there is nothing to back up")
    manifest = Manifest(
        revision, _kind(settings), app.__version__, datetime.now(UTC).isoformat(timespec="seconds")
    )
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(fileobj=out, mode="w|gz") as tar:
        _add_bytes(tar, "manifest.json", manifest.to_json())
        dump = Path(scratch) / "database"
        if manifest.database == "postgresql":
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                  f"--file={dump}"], _libpq_env(url))  # fmt: skip
            tar.add(dump, "database.pgdump")
        else:
            database = make_url(url).database or ""
            with sqlite3.connect(database) as source, sqlite3.connect(dump) as copy:
                source.backup(copy)
            tar.add(dump, "smokehouse.db")
        for name, path in _data_paths(settings).items():
            if path.exists():
                tar.add(path, name)
    return manifest


def user_rows(url: str) -> dict[str, int]:
    """A user's rows per table; empty for a fresh instance, even one that has been running."""
    engine = get_database(url).engine
    counts = {}
    with engine.connect() as connection:
        for table in sorted(set(inspect(engine).get_table_names()) - NOT_USER_DATA):
            where = f" WHERE {USER_ROWS_WHERE[table]}" if table in USER_ROWS_WHERE else ""
            query = text(f'SELECT count(*) FROM "{table}"{where}')
            if rows := connection.execute(query).scalar_one():
                counts[table] = rows
    return counts


#: tarfile's "data" filter where this Python has it (3.11.4+; Debian 12 ships 3.11.2).
_DATA_FILTER: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _extract(tar: tarfile.TarFile, scratch: str) -> None:
    """Only plain files and directories under the scratch directory: an archive is input."""
    for member in tar:
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise BackupError(f"not a smokehouse backup: unexpected entry {member.name!r}")
        tar.extract(member, scratch, **_DATA_FILTER)


@contextmanager
def _opened(source: IO[bytes]) -> Iterator[tuple[Manifest, Path]]:
    """The archive unpacked into a private scratch directory, manifest checked."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            with tarfile.open(fileobj=source, mode="r|gz") as tar:
                _extract(tar, scratch)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BackupError(f"not a readable smokehouse backup: {exc}") from None
        root = Path(scratch)
        manifest_file = root / "manifest.json"
        manifest = Manifest.from_json(manifest_file.read_bytes() if manifest_file.exists() else b"")
        yield manifest, root


def restore_backup(settings: Settings, source: IO[bytes], *, force: bool = False) -> dict[str, Any]:
    """Replace this instance's database and keys with the archive's, then migrate to head."""
    url = settings.sqlalchemy_url
    with _opened(source) as (manifest, root):
        if manifest.revision not in known_revisions():
            raise BackupError(
                f"the backup's schema is at revision {manifest.revision}, newer than this "
                f"smokehouse knows (up to {known_revisions()[-1]}): restore it with the release "
                f"that made it ({manifest.smokehouse})"
            )
        if manifest.database != _kind(settings):
            raise BackupError(
                f"the backup holds a {manifest.database} database and this instance uses "
                f"{_kind(settings)}: restore it into an instance of the same kind"
            )
        occupied = user_rows(url) if current_revision(url) is not None else {}
        if occupied and not force:
            shown = ", ".join(f"{t} ({n})" for t, n in sorted(occupied.items())[:5])
            raise BackupError(
                f"this instance already holds data ({shown}…): restore into a fresh one, or "
                "pass --force to replace it"
            )
        if manifest.database == "postgresql":
            _restore_postgres(url, root / "database.pgdump")
        else:
            _restore_sqlite(url, root / "smokehouse.db")
        restored_files = _restore_files(settings, root)
    upgrade(url)
    return {
        "from_revision": manifest.revision,
        "revision": current_revision(url),
        "made_by": manifest.smokehouse,
        "created_at": manifest.created_at,
        "files": restored_files,
    }


def _restore_postgres(url: str, dump: Path) -> None:
    database = get_database(url)
    # Everything in the schema goes first: tables a newer head created would block the older
    # backup's upgrade. One transaction; pg_restore's is another (a failure leaves it empty).
    with database.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    database.dispose()
    _run(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", f"--dbname={make_url(url).database}", str(dump)],
         _libpq_env(url))  # fmt: skip


def _restore_sqlite(url: str, copy: Path) -> None:
    target = Path(make_url(url).database or "")
    get_database(url).dispose()
    staged = target.with_name(target.name + ".restoring")
    shutil.copyfile(copy, staged)
    for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)
    os.replace(staged, target)


def _restore_files(settings: Settings, root: Path) -> list[str]:
    mosquitto_mode = settings.iot.provisioning.file_mode
    restored = []
    for name, path in _data_paths(settings).items():
        found = root / name
        if not found.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if found.is_dir():
            shutil.copytree(found, path, dirs_exist_ok=True)
        else:
            shutil.copyfile(found, path)
            path.chmod(mosquitto_mode if name.startswith("mosquitto/") else 0o600)
        restored.append(name)
    return restored
