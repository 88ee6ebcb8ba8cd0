"""One validated Settings object, read from ``SMOKEHOUSE_*`` environment variables (and ``.env``).

Every URL is checked for a scheme we can actually use, so a typo fails at start with the
setting's name instead of deep inside a driver. Unset service URLs mean *embedded*: SQLite and a
SQLite-backed broker in the data dir, an in-process MQTT broker, in-process pub/sub.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.auth import AccessKey, parse_access_keys

ENV_PREFIX = "SMOKEHOUSE_"

URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "database_url": ("sqlite", "postgresql", "postgresql+psycopg"),
    "broker_url": (
        "redis",
        "rediss",
        "amqp",
        "amqps",
        "pyamqp",
        "smokehouse+sqlite",
        "sqla+sqlite",
    ),
    "redis_url": ("redis", "rediss", "unix"),
    "mqtt_url": ("mqtt", "mqtts", "tcp", "ssl"),
}

Mode = Literal["embedded", "production"]


class ConfigError(Exception):
    """A setting is wrong; ``str()`` is one line that names it."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


def _check_scheme(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        shown = scheme or "(none)"
        raise ValueError(f"unsupported URL scheme {shown!r}; use one of: {', '.join(schemes)}")
    return value


class Settings(BaseSettings):
    """smokehouse's configuration; every field maps to ``SMOKEHOUSE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(default=Path(".smokehouse"), description="Where embedded state lives.")
    database_url: str | None = Field(default=None, description="Unset: SQLite in the data dir.")
    broker_url: str | None = Field(default=None, description="Unset: SQLite broker in data dir.")
    redis_url: str | None = Field(default=None, description="Pub/sub; unset: in-process.")
    mqtt_url: str | None = Field(default=None, description="Unset: embedded amqtt broker.")
    embedded_mqtt_port: int = Field(default=1883, ge=1, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    access_keys: SecretStr = Field(default=SecretStr(""), description="id:secret:role,...")
    gitlab_webhook_token: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    auto_migrate: bool = Field(default=True, description="Apply migrations when the API starts.")
    definitions_dir: Path | None = Field(
        default=None, description="Your own rules (YAML) and state machines, applied at start."
    )
    bus_sweep_grace_seconds: float = Field(
        default=30.0, gt=0, description="A delivery not picked up this long is enqueued again."
    )
    bus_claim_seconds: float = Field(
        default=60.0, gt=0, description="How long an attempt may run before others may retry it."
    )
    handler_modules: str = Field(
        default="", description="Comma-separated modules that register your @handler functions."
    )
    workflow_task_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running workflow Task is claimed this long (renewed while its worker "
        "lives); a dead worker's task runs again after it lapses.",
    )
    workflow_sweep_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A workflow task or timer enqueued this long ago and not picked up is "
        "enqueued again.",
    )
    region: str = "us-east-1"
    account_id: str = Field(default="000000000000", pattern=r"^\d{12}$")
    cors_origins: str = Field(
        default="", description="Comma-separated origins allowed to call the API from a browser."
    )

    @field_validator("database_url", "broker_url", "redis_url", "mqtt_url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_scheme(value, URL_SCHEMES[str(info.field_name)])

    @field_validator("access_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr) -> SecretStr:
        parse_access_keys(value.get_secret_value())
        return value

    @property
    def handler_module_list(self) -> list[str]:
        return [m.strip() for m in self.handler_modules.split(",") if m.strip()]

    @property
    def mode(self) -> Mode:
        """Embedded when the database is SQLite: one machine, no services."""
        return "embedded" if self.sqlalchemy_url.startswith("sqlite") else "production"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{(self.data_dir / 'smokehouse.db').resolve()}"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"smokehouse+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def embedded_mqtt(self) -> bool:
        return not self.mqtt_url

    @property
    def effective_mqtt_url(self) -> str:
        return self.mqtt_url or f"mqtt://127.0.0.1:{self.embedded_mqtt_port}"

    @property
    def http_url(self) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    @cached_property
    def configured_keys(self) -> tuple[AccessKey, ...]:
        return parse_access_keys(self.access_keys.get_secret_value())

    def masked(self) -> dict[str, Any]:
        """The effective configuration, secrets and URL passwords hidden (``smokehouse config``)."""
        shown: dict[str, Any] = {
            "mode": self.mode,
            "data_dir": str(self.data_dir.resolve()),
            "database_url": _mask_url(self.sqlalchemy_url),
            "broker_url": _mask_url(self.celery_broker_url),
            "redis_url": _mask_url(self.redis_url) if self.redis_url else None,
            "mqtt_url": _mask_url(self.effective_mqtt_url),
            "embedded_mqtt": self.embedded_mqtt,
            "http_url": self.http_url,
            "access_keys": [f"{k.id}:****:{k.role}" for k in self.configured_keys],
            "gitlab_webhook_token": "****" if self.gitlab_webhook_token else None,
        }
        for name in type(self).model_fields:
            if name not in shown and name not in ("access_keys", "gitlab_webhook_token"):
                value = getattr(self, name)
                shown[name] = str(value) if isinstance(value, Path) else value
        return shown


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return parts._replace(netloc=netloc).geturl()
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning pydantic's report into a one-line ``ConfigError``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(ENV_PREFIX + field.upper(), message) from None
