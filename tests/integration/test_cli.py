"""The command line: bad configuration ends with one line naming the setting, never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.integration.cli import run_cli
from tests.services import free_port

pytestmark = pytest.mark.integration


def assert_one_line_error(result: object, setting: str) -> str:
    assert result.returncode == 2, result.stderr  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith(f"smokehouse: error: {setting}: ")
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    return lines[0]


def test_config_prints_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    result = run_cli(
        "config",
        cwd=tmp_path,
        access_keys="AK:very-secret-3Lx8Qp5Vn2Wd7Gk4:admin",
        database_url="postgresql://app:dbpw@db/smokehouse",
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["mode"] == "production"
    assert shown["access_keys"] == ["AK:****:admin"]
    assert "very-secret" not in result.stdout
    assert "dbpw" not in result.stdout


def test_bad_url_scheme(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, broker_url="kafka://localhost")
    assert_one_line_error(result, "SMOKEHOUSE_BROKER_URL")


@pytest.mark.parametrize("command", ["run", "config", "worker", "scheduler", "api", "migrate"])
def test_a_bad_section_value_stops_every_command_at_once(tmp_path: Path, command: str) -> None:
    """The whole settings tree is read at start: a bad scaling value does not wait for the
    autoscaler to fail; nothing is started (no data dir, no database)."""
    result = run_cli(command, cwd=tmp_path, timeout=30, scaling_max_workers="abc")
    line = assert_one_line_error(result, "SMOKEHOUSE_SCALING_MAX_WORKERS")
    assert line.endswith("Input should be a valid integer, unable to parse string as an integer")
    assert not (tmp_path / ".smokehouse").exists()


def test_unreachable_database(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        cwd=tmp_path,
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/x",
        database_wait_seconds=0,
    )
    line = assert_one_line_error(result, "SMOKEHOUSE_DATABASE_URL")
    assert "cannot open the database" in line


def test_http_port_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("api", cwd=tmp_path, http_port=port, data_dir=tmp_path / "d")
    line = assert_one_line_error(result, "SMOKEHOUSE_HTTP_PORT")
    assert f"127.0.0.1:{port} is already in use" in line


def test_embedded_mqtt_port_taken_names_both_ways_out(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "run", cwd=tmp_path, embedded_mqtt_port=port, http_port=free_port(), data_dir="d"
        )
    line = assert_one_line_error(result, "SMOKEHOUSE_EMBEDDED_MQTT_PORT")
    assert f"SMOKEHOUSE_MQTT_URL=mqtt://127.0.0.1:{port}" in line
    assert "SMOKEHOUSE_EMBEDDED_MQTT_PORT=" in line


def test_migrate_creates_the_embedded_database(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, data_dir=tmp_path / "fresh")
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
    assert (tmp_path / "fresh" / "smokehouse.db").exists()


@pytest.mark.slow
def test_api_with_two_workers_logs_from_each_and_counts_all(tmp_path: Path) -> None:
    """``smokehouse api --workers=2`` (the compose file's): each spawned worker process sets up
    its own logging -- JSON, with secrets redacted -- instead of losing its logs, and
    ``/metrics`` counts the requests of both processes, whichever answers the scrape."""
    import subprocess
    import time

    import httpx

    from tests.integration.cli import cli_env, smokehouse_argv
    from tests.services import migrated_sqlite

    port = free_port()
    env = cli_env(
        data_dir=tmp_path / "d",
        database_url=migrated_sqlite(tmp_path / "api.db"),
        http_port=port,
        access_keys="AKTWO:two-workers-7Kd2Lp9Qx4Zv8Bn3:admin",
        log_format="json",
    )
    process = subprocess.Popen(
        smokehouse_argv("api", "--no-migrate", "--workers=2"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(3)  # the second worker finishes its startup

        def healthz_served() -> float:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("smokehouse_http_requests_total{") and "healthz" in line
            )

        before = healthz_served()
        for _ in range(20):  # a connection each: the kernel spreads them over both processes
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert healthz_served() - before == 20  # one /metrics counts every process
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    ready = [json.loads(line) for line in err.splitlines() if '"api ready"' in line]
    assert len(ready) == 2, err[-3000:]
    assert all(entry["level"] == "info" for entry in ready)
    assert "two-workers-7Kd2Lp9Qx4Zv8Bn3" not in err
