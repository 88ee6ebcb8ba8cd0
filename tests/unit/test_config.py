"""Settings: defaults, URL validation with the setting's name, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings


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
        access_keys="AKID:topsecret:admin,RO:alsosecret:viewer",
        gitlab_webhook_token="hooktoken",
        database_url="postgresql://user:dbpass@db/x",
        broker_url="redis://:redispass@redis:6379/0",
    )
    shown = repr(settings.masked())
    for secret in ("topsecret", "alsosecret", "hooktoken", "dbpass", "redispass"):
        assert secret not in shown
    assert "AKID:****:admin" in shown
    assert "postgresql+psycopg://user:****@db/x" in shown
