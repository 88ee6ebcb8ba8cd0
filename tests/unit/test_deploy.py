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
    command = list(OURS[name]["command"])
    assert command[0] in COMMANDS, f"{name}: 'smokehouse {command[0]}' does not exist"
    found = COMMANDS[command.pop(0)]
    while hasattr(found, "commands"):  # a group: `smokehouse scaling run`
        assert command, f"{name}: a group needs a subcommand"
        sub = command.pop(0)
        assert sub in found.commands, f"{name}: unknown subcommand {sub}"
        found = found.commands[sub]
    params = found.params
    options = {o for p in params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}
    for arg in command:
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
        assert test[3] in ("api", "worker", "scheduler", "ingest", "autoscaler")


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
            if source.startswith("./deploy/mosquitto/certs/"):
                continue  # made by `smokehouse tls init` (test_mosquitto_serves_tls_only)
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


# --- secure defaults (issue 12) ------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
EXAMPLE = (ROOT / ".env.example").read_text()
EXAMPLE_VALUES = dict(re.findall(r"^(\w+)=(.*)$", EXAMPLE, re.MULTILINE))
#: Every secret a role may hold, and which roles hold it.
SECRETS = {
    # The autoscaler hands a worker's secrets down to the worker containers it starts.
    "POSTGRES_PASSWORD": {"migrate", "api", "worker", "scheduler", "ingest", "autoscaler"},
    "REDIS_PASSWORD": {"api", "worker", "scheduler", "ingest", "autoscaler"},
    "SMOKEHOUSE_MQTT_PASSWORD": {"api", "worker", "ingest", "autoscaler"},
    "SMOKEHOUSE_ACCESS_KEYS": {"api"},
    "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN": {"api"},
    "SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS": {"api"},
    "SMOKEHOUSE_SECRET_KEY": {"api", "worker", "autoscaler"},
    "SMOKEHOUSE_GITLAB_API_TOKEN": {"worker", "autoscaler"},
    "AWS_ACCESS_KEY_ID": {"worker", "autoscaler"},
    "AWS_SECRET_ACCESS_KEY": {"worker", "autoscaler"},
}


def with_defaults(text: str) -> str:
    """What compose makes of ``text`` when .env sets nothing optional."""
    return VARIABLE.sub(lambda m: m.group(3) if m.group(2) == "-" else f"<{m.group(1)}>", text)


def secrets_of(service: dict[str, Any]) -> set[str]:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "environment as a mapping"
    text = " ".join(str(v) for v in environment.values())
    return {name for name, _, _ in VARIABLE.findall(text) if name in SECRETS}


def test_the_api_is_published_on_loopback_only_by_default() -> None:
    ports = [with_defaults(p) for p in SERVICES["api"]["ports"]]
    assert ports == ["127.0.0.1:8000:8000"]


def test_only_the_api_and_mqtt_over_tls_are_published() -> None:
    published = {
        name: [with_defaults(str(p)) for p in s["ports"]]
        for name, s in SERVICES.items()
        if s.get("ports")
    }
    assert set(published) == {"api", "mosquitto"}
    assert published["mosquitto"] == ["8883:8883"]
    for ports in published.values():
        assert not any(p.endswith((":1883", ":5432", ":6379")) for p in ports)


def test_data_services_are_on_the_internal_network_only() -> None:
    assert COMPOSE["networks"]["data"]["internal"] is True
    for name in ("postgres", "redis"):
        assert SERVICES[name]["networks"] == ["data"]
    for name in ("migrate", "scheduler", "ingest"):
        assert OURS[name]["networks"] == ["data"], name


def test_redis_requires_a_password_and_every_url_carries_it() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert (
        command[command.index("--requirepass") + 1]
        == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    )
    # the healthcheck authenticates: an unauthenticated ping answers NOAUTH, not PONG
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "grep -qx PONG" in " ".join(redis["healthcheck"]["test"])
    for name, service in OURS.items():
        for variable in ("SMOKEHOUSE_BROKER_URL", "SMOKEHOUSE_REDIS_URL"):
            url = (service.get("environment") or {}).get(variable)
            if url is not None:
                assert url.startswith("redis://:${REDIS_PASSWORD:?"), (name, variable)


def test_mosquitto_serves_tls_only_outside_and_plaintext_inside() -> None:
    mosquitto = SERVICES["mosquitto"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mosquitto["volumes"]}
    assert mounts["/mosquitto/config/conf.d/15-tls.conf"] == "./deploy/mosquitto/tls.conf"
    tls = (ROOT / "deploy/mosquitto/tls.conf").read_text()
    assert re.search(r"^listener 8883$", tls, re.MULTILINE)
    for option, name in (
        ("cafile", "ca.crt"),
        ("certfile", "server.crt"),
        ("keyfile", "server.key"),
    ):
        path = re.search(rf"^{option} /mosquitto/tls/(\S+)$", tls, re.MULTILINE)
        assert path is not None, option
        assert path.group(1) == name
        assert mounts[f"/mosquitto/certs/{name}"] == f"./deploy/mosquitto/certs/{name}"
    # Mosquitto reads them as its own user: the command copies them (the key 0600) for it.
    command = " ".join(mosquitto["command"])
    assert "cp /mosquitto/certs/* /mosquitto/tls/" in command
    assert "chmod 0600 /mosquitto/tls/server.key" in command
    assert not any("ca.key" in v for v in mosquitto["volumes"]), "the CA's key stays out"
    assert (ROOT / "deploy/mosquitto/certs/.gitignore").exists()
    # the server reaches the plaintext listener on the internal network only
    for name in ("api", "worker", "ingest"):
        url = OURS[name]["environment"]["SMOKEHOUSE_MQTT_URL"]
        assert url.endswith("@mosquitto:1883"), name
    assert "data" in mosquitto["networks"]


def test_mosquittos_auth_files_are_not_world_readable() -> None:
    assert OURS["api"]["environment"]["SMOKEHOUSE_IOT_MOSQUITTO_FILE_MODE"] == "0640"
    start = " ".join(SERVICES["mosquitto"]["command"])
    assert "chmod 2750 /mosquitto-auth" in start
    assert "chown 10001:1883" in start


def test_no_role_gets_a_shared_env_file() -> None:
    for name, service in SERVICES.items():
        assert "env_file" not in service, name


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_role_gets_only_the_secrets_it_uses(name: str) -> None:
    wanted = {secret for secret, roles in SECRETS.items() if name in roles}
    assert secrets_of(OURS[name]) == wanted


def test_every_variable_compose_uses_is_in_env_example() -> None:
    used = {m.group(1) for m in VARIABLE.finditer((ROOT / "docker-compose.yml").read_text())}
    assert used - set(EXAMPLE_VALUES) == set()


def test_env_example_holds_no_usable_secret() -> None:
    """A copied .env must not start with a working secret: each is a CHANGE-ME placeholder
    (start-up refuses them) or empty for an optional one, and says how to make a real one."""
    for secret in SECRETS:
        value = EXAMPLE_VALUES[secret]
        assert value == "" or "CHANGE-ME" in value, secret
    assert "secrets.token_urlsafe(32)" in EXAMPLE
    assert "Fernet.generate_key().decode()" in EXAMPLE


def test_the_readme_documents_the_secure_compose_setup() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in (
        "127.0.0.1:8000",
        "reverse_proxy",
        "REDIS_PASSWORD",
        "smokehouse tls init",
        "SMOKEHOUSE_SECRET_KEY",
    ):
        assert needle in readme, needle
