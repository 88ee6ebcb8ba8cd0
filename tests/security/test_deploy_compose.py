"""The compose file as a compose implementation reads it: Debian's ``podman-compose`` (1.0.3 has no
``config``; ``--dry-run up`` interpolates .env and prints every container's command line without
running anything). Skipped where podman-compose is not installed; tests/unit/test_deploy.py reads
the same file with PyYAML everywhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.services import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def dry_run(tmp_path: Path) -> dict[str, str]:
    binary = shutil.which("podman-compose")
    if binary is None:
        pytest.skip("podman-compose is not installed")
    project = tmp_path / "smokehouse"
    project.mkdir()
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, project / name)
    shutil.copy(ROOT / ".env.example", project / ".env")
    result = subprocess.run(
        [binary, "--dry-run", "up", "-d", "--no-build"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    containers = {}
    for line in result.stdout.splitlines():
        found = re.search(r"--name=smokehouse_(\w+)_1 ", line)
        if found:
            containers[found.group(1)] = line
    return containers


def test_podman_compose_reads_it_with_the_secure_defaults(dry_run: dict[str, str]) -> None:
    assert {
        "postgres",
        "redis",
        "mosquitto",
        "migrate",
        "api",
        "worker",
        "scheduler",
        "ingest",
    } <= set(dry_run)
    assert all("${" not in line for line in dry_run.values()), "uninterpolated variables"
    published = {n: re.findall(r" -p (\S*\d:\d+)", line) for n, line in dry_run.items()}
    assert {n: p for n, p in published.items() if p} == {
        "api": ["127.0.0.1:8000:8000"],
        "mosquitto": ["8883:8883"],
    }
    assert "--requirepass CHANGE-ME-redis-password" in dry_run["redis"]
    assert "-e SMOKEHOUSE_SECRET_KEY=" in dry_run["api"]
    assert "-e SMOKEHOUSE_SECRET_KEY=" not in dry_run["ingest"]
    assert "-e SMOKEHOUSE_ACCESS_KEYS=" not in dry_run["worker"]
    assert "AWS_SECRET_ACCESS_KEY" not in dry_run["api"]
    assert "SMOKEHOUSE_GITLAB_API_TOKEN" not in dry_run["api"]
    assert re.search(r"--net smokehouse_data( |$)", dry_run["postgres"])
