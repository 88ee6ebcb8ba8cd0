"""Data-dir files are private: ``smokehouse run`` (every role, embedded) leaves nothing in its data
dir that another user could read — files ``0600``, directories ``0700`` — even when started from
a shell with the usual umask 022 and an existing world-readable data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from app.common.files import make_private_dir
from app.iot.mosquitto import AuthFiles, sync
from tests.integration.cli import cli_env, run_cli, smokehouse_argv
from tests.integration.test_run import processes_with_data_dir
from tests.services import RUN_READY_SECONDS, free_port, wait_for

pytestmark = pytest.mark.integration


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def public(found: dict[str, int]) -> dict[str, str]:
    return {name: oct(mode) for name, mode in found.items() if mode & 0o077}


@pytest.mark.slow
def test_smokehouse_run_creates_private_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an older version (or `mkdir`) left it
    http_port = free_port()
    env = cli_env(data_dir=data, http_port=http_port, embedded_mqtt_port=free_port())
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        smokehouse_argv("run"),
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
        preexec_fn=lambda: os.umask(0o022),  # a login shell's umask
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_for(ready, RUN_READY_SECONDS, interval=0.2, what="/readyz to turn 200")
        # The database, the embedded broker's database, the admin key (beat keeps its schedule
        # in memory: several schedulers may run, and the one holding the lease sends).
        wanted = ("smokehouse.db", "broker.db", "access-key")
        wait_for(lambda: all((data / n).exists() for n in wanted), 30, what=f"{wanted}")

        def scheduler_leads() -> bool:  # every role is up (as the old wait for beat's file)
            with contextlib.closing(sqlite3.connect(data / "smokehouse.db")) as db:
                try:
                    return bool(
                        db.execute("SELECT 1 FROM leases WHERE name='scheduler'").fetchone()
                    )
                except sqlite3.OperationalError:
                    return False

        wait_for(scheduler_leads, 30, what="the scheduler to lead")
        found = modes(data)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=40)
        deadline = time.monotonic() + 10
        while processes_with_data_dir(data) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert found["."] == 0o700
    assert {"smokehouse.db", "broker.db", "access-key"} <= set(found)
    assert public(found) == {}, f"readable by others: {public(found)}"
    assert public(modes(data)) == {}  # and after shutdown


def test_a_command_on_an_existing_data_dir_makes_it_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    result = run_cli("migrate", cwd=tmp_path, data_dir=data)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "smokehouse.db").stat().st_mode) == 0o600


def test_mosquitto_files_are_0600_unless_the_setting_says_otherwise(tmp_path: Path) -> None:
    from app.iot.provisioning_settings import load_provisioning_settings

    assert load_provisioning_settings().file_mode == 0o600
    private = AuthFiles(tmp_path / "a" / "passwd", tmp_path / "a" / "acl")
    sync(private, [], service=("smokehouse", "pw"))
    assert stat.S_IMODE(private.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.acl_file.stat().st_mode) == 0o600
    shared = AuthFiles(tmp_path / "b" / "passwd", tmp_path / "b" / "acl", mode=0o640)
    sync(shared, [], service=("smokehouse", "pw"))
    assert stat.S_IMODE(shared.password_file.stat().st_mode) == 0o640


def test_make_private_dir_leaves_someone_elses_directory_alone(tmp_path: Path) -> None:
    made = make_private_dir(tmp_path / "x" / "y")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
