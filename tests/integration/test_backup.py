"""``smokehouse backup`` / ``restore``: an instance's data restored into a fresh instance is the
same, row for row and file for file (SQLite with its data dir, PostgreSQL through pg_dump); what
cannot be restored safely is refused with one line and changes nothing."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect, text

from app.backup.archive import user_rows
from app.db import get_database
from app.migrate import head_revision
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import run_cli
from tests.services import migrated_sqlite, postgres_database

pytestmark = pytest.mark.integration


class Instance:
    """One smokehouse's settings (data dir, and a PostgreSQL database for the compose kind)."""

    def __init__(self, root: Path, database_url: str | None) -> None:
        self.root = root
        self.settings: dict[str, Any] = {"data_dir": root / "data"}
        if database_url:
            self.settings |= {"database_url": database_url, "secret_key": TEST_SECRET_KEY}
        self.url = database_url or f"sqlite:///{root / 'data' / 'smokehouse.db'}"

    def cli(self, *args: str, ok: bool = True) -> Any:
        result = run_cli(*args, cwd=self.root, **self.settings)
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return {
                    table: sorted(
                        (tuple(map(str, row)) for row in connection.execute(
                            text(f'SELECT * FROM "{table}"')
                        )),
                    )
                    for table in inspect(engine).get_table_names()
                }  # fmt: skip
        finally:
            engine.dispose()

    def files(self) -> dict[str, bytes]:
        data = self.settings["data_dir"]
        return {
            str(p.relative_to(data)): p.read_bytes()
            for p in sorted(data.rglob("*"))
            if p.is_file()
            and p.suffix != ".lock"
            and p.parts[len(data.parts)] in ("secret-key", "access-key", "mosquitto")
        }


def make_instance(root: Path, kind: str, stack: Any) -> Instance:
    root.mkdir()
    if kind == "sqlite":
        migrated_sqlite(root / "data" / "smokehouse.db")
        return Instance(root, None)
    url = stack.enter_context(postgres_database(migrated=True))
    return Instance(root, url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backed_up(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Instance, Path]]:
    """An instance with data and its backup, made once per kind for the module's tests."""
    kind = str(request.param)
    with ExitStack() as stack:
        source = make_instance(tmp_path_factory.mktemp("source") / "instance", kind, stack)
        fill(source)
        archive = source.root / "backup.tar.gz"
        made = source.cli("backup", str(archive))
        assert f"backed up revision {head_revision()}" in made.stdout
        yield kind, source, archive


def fill(instance: Instance) -> None:
    """What a user stores: an event on the bus, a device with its MQTT credentials (and, embedded,
    the secret key the API generates at its first start)."""
    if "database_url" not in instance.settings:
        key = instance.settings["data_dir"] / "secret-key"
        key.write_bytes(Fernet.generate_key())
        key.chmod(0o600)
    instance.cli("events", "put", "--source", "shop", "--detail-type", "order", "--detail", "{}")
    instance.cli("device", "add", "Backyard", "--id", "pit", "--json")


def test_a_backup_restored_into_a_fresh_instance_is_the_same(
    backed_up: tuple[str, Instance, Path], tmp_path: Path
) -> None:
    kind, source, archive = backed_up
    assert archive.stat().st_mode & 0o077 == 0, "the archive holds secrets: 0600"
    with ExitStack() as stack:
        fresh = make_instance(tmp_path / "fresh", kind, stack)
        restored = fresh.cli("restore", str(archive))
        assert f"the database is at revision {head_revision()}" in restored.stdout
        assert fresh.tables() == source.tables()
        assert fresh.files() == source.files()
        assert any(name.startswith("mosquitto/") for name in fresh.files())
        if kind == "sqlite":
            assert "secret-key" in fresh.files(), "embedded secrets need their key"


def test_restore_refuses_an_instance_with_data_and_force_replaces_it(
    backed_up: tuple[str, Instance, Path], tmp_path: Path
) -> None:
    kind, source, archive = backed_up
    with ExitStack() as stack:
        busy = make_instance(tmp_path / "busy", kind, stack)
        busy.cli("events", "put", "--source", "other", "--detail-type", "x")
        before = busy.tables()
        refused = busy.cli("restore", str(archive), ok=False)
        assert refused.returncode == 1
        assert "already holds data (events (1)" in refused.stderr
        assert "--force" in refused.stderr
        assert busy.tables() == before
        busy.cli("restore", str(archive), "--force")
        assert busy.tables() == source.tables()


def test_an_older_backup_is_migrated_on_restore(tmp_path: Path) -> None:
    from app.migrate import upgrade

    old = Instance(tmp_path / "old", None)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "data").mkdir()
    upgrade(old.url, "0010")
    archive = tmp_path / "old.tar.gz"
    assert "backed up revision 0010" in old.cli("backup", str(archive)).stdout
    fresh = Instance(tmp_path / "fresh", None)
    (tmp_path / "fresh").mkdir()
    done = fresh.cli("restore", str(archive))
    assert f"revision 0010); the database is at revision {head_revision()}" in done.stdout


def rewritten(archive: Path, change: dict[str, Any]) -> bytes:
    """The archive with its manifest changed."""
    out = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "manifest.json" and data is not None:
                data = json.dumps({**json.loads(data), **change}).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"revision": "9001"}, "newer than this smokehouse knows"),
        ({"database": "postgresql"}, "holds a postgresql database and this instance uses sqlite"),
        ({"format": "tarball"}, "not a smokehouse backup"),
    ],
)
def test_a_backup_this_instance_cannot_take_is_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    source = Instance(tmp_path / "source", None)
    (tmp_path / "source").mkdir()
    migrated_sqlite(tmp_path / "source" / "data" / "smokehouse.db")
    source.cli("backup", str(tmp_path / "good.tar.gz"))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(rewritten(tmp_path / "good.tar.gz", change))
    fresh = Instance(tmp_path / "fresh", None)
    (tmp_path / "fresh").mkdir()
    refused = fresh.cli("restore", str(bad), ok=False)
    assert refused.returncode == 1
    assert message in refused.stderr
    assert fresh.tables() == {}, "nothing was restored"


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"not a tar"))
    fresh = Instance(tmp_path, None)
    refused = fresh.cli("restore", str(junk), ok=False)
    assert refused.returncode == 1
    assert "not a readable smokehouse backup" in refused.stderr


def test_what_an_idle_instance_writes_for_itself_is_not_user_data(database_url: str) -> None:
    """A stack just started (compose: migrate, then every role) is still "fresh": a restore
    replaces it without --force. Found by make compose-check."""
    assert user_rows(database_url) == {}
    now = datetime.now(UTC)
    with get_database(database_url).session() as session:
        session.execute(
            text(
                "INSERT INTO rules (id, bus_name, name, event_pattern, state, managed_by,"
                " created_at, updated_at) VALUES ('r1', 'default', 'shipped', '{}', 'ENABLED',"
                " 'smokehouse', :now, :now)"
            ),
            {"now": now},
        )
        session.execute(
            text("INSERT INTO pings (id, sent_at, received_at, worker) VALUES ('p', :n, :n, 'w')"),
            {"n": now},
        )
        for n, source in enumerate(("smokehouse.scaling", "aws.events")):
            session.execute(
                text(
                    "INSERT INTO events (id, bus_name, source, detail_type, time, received_at,"
                    " envelope, matched_rules) VALUES (:id, 'default', :source, 'x', :n, :n,"
                    " '{}', 0)"
                ),
                {"id": f"e{n}", "source": source, "n": now},
            )
    assert user_rows(database_url) == {}
    with get_database(database_url).session() as session:
        session.execute(
            text(
                "INSERT INTO rules (id, bus_name, name, event_pattern, state, created_at,"
                " updated_at) VALUES ('r2', 'default', 'mine', '{}', 'ENABLED', :now, :now)"
            ),
            {"now": now},
        )
    assert user_rows(database_url) == {"rules": 1}


@pytest.mark.parametrize("entry", ["../escaped", "/etc/escaped", "link"])
def test_an_archive_entry_outside_its_directory_is_refused(tmp_path: Path, entry: str) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(entry)
        if entry == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(out.getvalue())
    refused = Instance(tmp_path, None).cli("restore", str(bad), ok=False)
    assert refused.returncode == 1
    assert f"unexpected entry {entry!r}" in refused.stderr
    assert not (tmp_path.parent / "escaped").exists()
