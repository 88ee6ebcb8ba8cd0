"""Every role starts only on a schema it understands: a database migrated by a newer release is
refused at once with one line, and a role started before the ``migrate`` one-shot (compose
implementations that ignore ``depends_on`` conditions, Kubernetes) waits for it."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from app.migrate import alembic_config, head_revision, known_revisions
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import cli_env, run_cli, smokehouse_argv
from tests.integration.test_cli import assert_one_line_error
from tests.services import free_port, migrated_sqlite, postgres_database

pytestmark = pytest.mark.integration


def test_known_revisions_are_alembics_in_order() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    alembic_order = [r.revision for r in script.walk_revisions()][::-1]
    assert known_revisions() == alembic_order
    assert head_revision() == script.get_current_head()


@pytest.mark.parametrize(
    "command",
    [["api"], ["api", "--no-migrate"], ["migrate"], ["worker"], ["scheduler"], ["ingest"]],
)
def test_a_database_from_a_newer_release_is_refused(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "data"
    migrated_sqlite(data / "smokehouse.db")
    with sqlite3.connect(data / "smokehouse.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9001'")
        db.execute("CREATE TABLE from_the_future (x INTEGER)")
    result = run_cli(*command, cwd=tmp_path, data_dir=data, http_port=free_port())
    line = assert_one_line_error(result, "SMOKEHOUSE_DATABASE_URL")
    assert f"at revision 9001, newer than this smokehouse knows (up to {head_revision()})" in line
    with sqlite3.connect(data / "smokehouse.db") as db:  # nothing was touched
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("9001",)]
        assert db.execute("SELECT count(*) FROM from_the_future").fetchone() == (0,)


def test_a_role_on_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    with postgres_database() as url:
        result = run_cli("scheduler", cwd=tmp_path, database_url=url, database_wait_seconds=0)
    line = assert_one_line_error(result, "SMOKEHOUSE_DATABASE_URL")
    assert line.endswith(f"needs {head_revision()}: run `smokehouse migrate`")


def test_an_api_started_before_migrate_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    with postgres_database() as url:
        api = subprocess.Popen(
            smokehouse_argv("api", "--no-migrate"),
            cwd=tmp_path,
            env=cli_env(
                database_url=url,
                http_port=port,
                data_dir=tmp_path / "data",
                access_keys="AKTEST:a-long-enough-test-secret-0123:admin",
                secret_key=TEST_SECRET_KEY,
                database_wait_seconds=60,
                log_format="json",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert api.stdout is not None
            seen = []
            while not seen or "waiting for migrations" not in seen[-1]:
                seen.append(api.stdout.readline())
                assert seen[-1], f"the API stopped instead of waiting: {seen}"
            migrated = run_cli("migrate", cwd=tmp_path, database_url=url)
            assert migrated.returncode == 0, migrated.stderr
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert api.poll() is None, "the API stopped"
                assert time.monotonic() < deadline, "the API never became ready"
                time.sleep(0.2)
        finally:
            api.terminate()
            api.wait(20)
