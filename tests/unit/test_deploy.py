"""Docker can't run here, so the deployment files are checked by reading them: every compose
command exists in the CLI, every required variable is in .env.example, the image is non-root."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
import yaml

from app.cli import cli
from tests.services import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("image") == "smokehouse:latest"}
COMMANDS = typer.main.get_command(cli).commands  # type: ignore[attr-defined]


def test_compose_has_the_production_stack() -> None:
    assert {"postgres", "redis", "mosquitto", "api", "worker", "scheduler"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_role_runs_a_real_cli_command(name: str) -> None:
    command = OURS[name]["command"]
    assert command[0] in COMMANDS, f"{name}: 'smokehouse {command[0]}' does not exist"
    params = COMMANDS[command[0]].params
    options = {o for p in params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}
    for arg in command[1:]:
        assert arg.split("=")[0] in options, f"{name}: unknown option {arg}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_or_is_one_shot(name: str) -> None:
    service = SERVICES[name]
    health = service.get("healthcheck", {})
    if health.get("disable"):
        assert service.get("restart") == "no", f"{name} runs forever without a healthcheck"
        return
    test = health["test"]
    if test[:3] == ["CMD", "smokehouse", "health"]:
        assert test[3] in ("api", "worker", "scheduler")


def test_dependencies_wait_for_healthy_services() -> None:
    for name in ("api", "worker", "scheduler"):
        depends = OURS[name]["depends_on"]
        for dependency in ("postgres", "redis", "mosquitto"):
            assert depends[dependency]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_required_variables_are_in_env_example() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert required <= defined, f"missing from .env.example: {required - defined}"


def test_mounted_files_exist() -> None:
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_image_is_multi_stage_non_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# syntax=")
    assert len(re.findall(r"^FROM ", dockerfile, re.MULTILINE)) == 2
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user
    assert user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile
    for copied in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), copied


def test_mosquitto_config_lifts_debians_queue_limits() -> None:
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert re.search(r"^max_inflight_messages 1000$", conf, re.MULTILINE)
    assert re.search(r"^max_queued_messages 100000$", conf, re.MULTILINE)


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make run" in head
    assert "make test" in head
