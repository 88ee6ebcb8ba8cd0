"""Settings: defaults, URL validation with the setting's name, secrets never shown."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

from app.cli import cli
from app.config import ConfigError, Settings, load_settings

HOOK_A, HOOK_B = "hook-a-3Nd8Vr1Qz6Wm4Kt9Xp", "hook-b-7Hc2Xs9Lp4Gb1Fy5Qa"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("SMOKEHOUSE_"):
            monkeypatch.delenv(name)


def test_defaults_are_embedded_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d")
    assert settings.mode == "embedded"
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'd' / 'smokehouse.db'}"
    assert settings.celery_broker_url.startswith("smokehouse+sqlite:///")
    assert settings.embedded_mqtt
    assert settings.effective_mqtt_url == "mqtt://127.0.0.1:1883"
    assert settings.http_url == "http://127.0.0.1:8000"


def test_environment_variables_use_the_smokehouse_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_DATABASE_URL", "postgresql://u:p@db/smokehouse")
    monkeypatch.setenv("SMOKEHOUSE_MQTT_URL", "mqtt://broker:1884")
    monkeypatch.setenv("SMOKEHOUSE_HTTP_PORT", "9000")
    settings = load_settings()
    assert settings.mode == "production"
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db/smokehouse"
    assert not settings.embedded_mqtt
    assert settings.http_port == 9000


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("database_url", "mysql://x/y", "SMOKEHOUSE_DATABASE_URL"),
        ("broker_url", "kafka://x", "SMOKEHOUSE_BROKER_URL"),
        ("redis_url", "http://x", "SMOKEHOUSE_REDIS_URL"),
        ("mqtt_url", "ws://x", "SMOKEHOUSE_MQTT_URL"),
        ("http_port", 70000, "SMOKEHOUSE_HTTP_PORT"),
        ("access_keys", "onlyid", "SMOKEHOUSE_ACCESS_KEYS"),
        ("access_keys", "a:b:root", "SMOKEHOUSE_ACCESS_KEYS"),
        ("account_id", "12", "SMOKEHOUSE_ACCOUNT_ID"),
    ],
)
def test_bad_values_name_the_setting_in_one_line(field: str, value: object, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"{setting}: ")
    assert "\n" not in message


def test_unknown_scheme_lists_the_usable_ones() -> None:
    with pytest.raises(ConfigError, match="use one of: redis, rediss, amqp"):
        load_settings(broker_url="kafka://x")


def test_masked_configuration_hides_every_secret() -> None:
    settings = load_settings(
        access_keys="AKID:topsecret-4Rk8Wq2Nz6Hv1Lc9:admin,RO:alsosecret-7Dm3Xp5Tb8Gy2Jf6:viewer",
        gitlab_webhook_token="hooktoken-2Vs9Kc4Qw7Ln3Rz8",
        database_url="postgresql://user:dbpass@db/x",
        broker_url="redis://:redispass@redis:6379/0",
    )
    shown = repr(settings.masked())
    for secret in ("topsecret", "alsosecret", "hooktoken", "dbpass", "redispass"):
        assert secret not in shown
    assert "AKID:****:admin" in shown
    assert "postgresql+psycopg://user:****@db/x" in shown


# -- the settings tree: one Settings() reads and validates every section --------------------------

BAD_PER_SECTION = [
    ("SMOKEHOUSE_HTTP_PORT", "0"),
    ("SMOKEHOUSE_IOT_QUEUE_SIZE", "1"),
    ("SMOKEHOUSE_IOT_OFFLINE_SECONDS", "-1"),  # settings.iot.alarms
    ("SMOKEHOUSE_IOT_DEVICE_MQTT_URL", "http://x"),  # settings.iot.provisioning
    ("SMOKEHOUSE_SCALING_MAX_WORKERS", "abc"),
    ("SMOKEHOUSE_RUNNERS_IDLE_SECONDS", "soon"),
    ("SMOKEHOUSE_GITLAB_URL", "gitlab.example.com"),
    ("SMOKEHOUSE_WORKER_CONCURRENCY", "0"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_PER_SECTION)
def test_a_bad_value_in_any_section_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_the_scaling_error_reads_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_SCALING_MAX_WORKERS", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "SMOKEHOUSE_SCALING_MAX_WORKERS: Input should be a valid integer, "
        "unable to parse string as an integer"
    )


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("SMOKEHOUSE_WORKER_CONCURRENCY", "7", lambda s: s.worker.concurrency),
        ("SMOKEHOUSE_WORKER_ID", "w-1", lambda s: s.worker.id),
        ("SMOKEHOUSE_WORKER_BACKEND", "docker", lambda s: s.worker.backend),
        ("SMOKEHOUSE_WORKER_BACKEND_REF", "c0ffee", lambda s: s.worker.backend_ref),
        ("SMOKEHOUSE_IOT_COOK_IDLE_SECONDS", "60", lambda s: s.iot.cook_idle_seconds),
        ("SMOKEHOUSE_IOT_ALARM_HYSTERESIS_C", "2.5", lambda s: s.iot.alarms.alarm_hysteresis_c),
        ("SMOKEHOUSE_IOT_DISCOVERY_PREFIX", "ha", lambda s: s.iot.provisioning.discovery_prefix),
        ("SMOKEHOUSE_SCALING_MAX_WORKERS", "9", lambda s: s.scaling.max_workers),
        ("SMOKEHOUSE_RUNNERS_MAX_START_ATTEMPTS", "5", lambda s: s.runners.max_start_attempts),
        ("SMOKEHOUSE_GITLAB_URL", "https://gl.example", lambda s: s.gitlab.url),
        ("SMOKEHOUSE_GITLAB_TIMEOUT_SECONDS", "9", lambda s: s.gitlab.timeout_seconds),
        ("SMOKEHOUSE_HTTP_PORT", "9001", lambda s: s.http_port),
    ],
)
def test_the_old_variable_names_still_map(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, read: Any
) -> None:
    monkeypatch.setenv(variable, value)
    got = read(load_settings())
    assert got == type(got)(value)


def test_the_moved_fields_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN", f"{HOOK_A},{HOOK_B}")
    settings = load_settings()
    assert settings.gitlab_webhook_token is not None
    assert settings.gitlab_webhook_token.get_secret_value() == f"{HOOK_A},{HOOK_B}"
    assert load_settings(worker_concurrency=5).worker.concurrency == 5


def _env_names(kind: type[BaseSettings]) -> list[str]:
    prefix = str(kind.model_config.get("env_prefix", ""))
    names = []
    for name, field in kind.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseSettings):
            names += _env_names(sub)
        else:
            names.append((prefix + name).upper())
    return names


def test_every_variable_has_exactly_one_reader() -> None:
    names = _env_names(Settings)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_documented_variable_is_read() -> None:
    """Each ``SMOKEHOUSE_*`` name the docs and deployment files mention maps to a setting."""
    root = Path(__file__).resolve().parents[2]
    sources = [root / "README.md", root / ".env.example", root / "docker-compose.yml"]
    sources += list((root / "deploy").rglob("*")) + list((root / "app").rglob("*.md"))
    mentioned = set()
    for source in sources:
        if source.is_file():
            mentioned |= set(re.findall(r"SMOKEHOUSE_[A-Z0-9_]*[A-Z0-9]", source.read_text()))
    # Not settings: compose interpolation, a runner container's env, test/bench knobs.
    others = {"SMOKEHOUSE_MQTT_PASSWORD", "SMOKEHOUSE_JOB_ID"}
    read = set(_env_names(Settings))
    missing = {
        n
        for n in mentioned - others - read
        if not n.startswith("SMOKEHOUSE_TEST_") and not any(r.startswith(n + "_") for r in read)
    }
    assert not missing


def test_config_shows_every_section_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_GITLAB_API_TOKEN", "glpat-secret")
    monkeypatch.setenv("SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN", "hook-secret-8Mt2Yx5Bq9Fk3Wn6")
    monkeypatch.setenv("SMOKEHOUSE_GITLAB_URL", "https://user:gitlabpass@gl.example")
    monkeypatch.setenv("SMOKEHOUSE_IOT_DEVICE_MQTT_URL", "mqtt://dev:devpass@broker:1883")
    monkeypatch.setenv("SMOKEHOUSE_ACCESS_KEYS", "AKID:topsecret-4Rk8Wq2Nz6Hv1Lc9:admin")
    monkeypatch.setenv("SMOKEHOUSE_DATABASE_URL", "postgresql://u:dbpass@db/x")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert {"iot", "scaling", "runners", "gitlab", "worker"} <= shown.keys()
    assert {"alarms", "provisioning"} <= shown["iot"].keys()
    for secret in ("glpat-secret", "hook-secret", "gitlabpass", "devpass", "topsecret", "dbpass"):
        assert secret not in result.output
    assert shown["gitlab"]["api_token"] == "****"
