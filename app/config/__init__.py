"""One validated settings tree, read from ``SMOKEHOUSE_*`` environment variables (and ``.env``).

The root owns the shared names (``SMOKEHOUSE_DATABASE_URL``...); each domain's prefix has one
section hanging off it (``settings.iot``, ``settings.scaling``, ``settings.runners``,
``settings.gitlab``, ``settings.worker``), read by the same ``Settings()`` call, so a bad value
anywhere stops a command at start with one line naming the variable.

Every URL is checked for a scheme we can actually use, so a typo fails at start with the
setting's name instead of deep inside a driver. Unset service URLs mean *embedded*: SQLite and a
SQLite-backed broker in the data dir, an in-process MQTT broker, in-process pub/sub.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.auth import DEFAULT_SESSION_TTL, AccessKey, check_secret_strength, parse_access_keys
from app.config.egress import EgressSettings
from app.config.iot import AlarmSettings, IotSettings, ProvisioningSettings
from app.config.queues import QueuesSettings
from app.config.runners import GitLabSettings, RunnersSettings, parse_scoped_tokens
from app.config.scaling import ScalingSettings
from app.config.scheduler import SchedulerSettings
from app.config.worker import WorkerSettings

__all__ = [
    "AlarmSettings",
    "ConfigError",
    "EgressSettings",
    "GitLabSettings",
    "IotSettings",
    "ProvisioningSettings",
    "QueuesSettings",
    "RunnersSettings",
    "ScalingSettings",
    "SchedulerSettings",
    "Settings",
    "WorkerSettings",
    "load_section",
    "load_settings",
]

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
    """smokehouse's configuration: fields map to ``SMOKEHOUSE_<NAME>``, sections to their own
    prefix (see each section's module)."""

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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    auto_migrate: bool = Field(default=True, description="Apply migrations when the API starts.")
    database_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a role waits at start for the database and its migrations (compose "
        "and Kubernetes may start it first); then it exits with the reason.",
    )
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
    session_ttl_seconds: int = Field(
        default=DEFAULT_SESSION_TTL,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a session token (POST /auth/session, `smokehouse session`) lives.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) for the secret store, comma-separated: the first encrypts, "
        "all decrypt. Unset: embedded mode generates <data_dir>/secret-key.",
    )

    iot: IotSettings = Field(default_factory=IotSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    runners: RunnersSettings = Field(default_factory=RunnersSettings)
    gitlab: GitLabSettings = Field(default_factory=GitLabSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    queues: QueuesSettings = Field(default_factory=QueuesSettings)

    @field_validator("database_url", "broker_url", "redis_url", "mqtt_url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_scheme(value, URL_SCHEMES[str(info.field_name)])

    @field_validator("access_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr) -> SecretStr:
        for key in parse_access_keys(value.get_secret_value()):
            check_secret_strength(f"the secret of access key {key.id!r}", key.secret)
        return value

    @field_validator("gitlab")
    @classmethod
    def _check_webhook_tokens(cls, value: GitLabSettings) -> GitLabSettings:
        """Every configured webhook token, scoped or global, must be strong."""
        prefix = str(value.model_config.get("env_prefix"))
        scoped = value.webhook_tokens.get_secret_value() if value.webhook_tokens else ""
        for number, grant in enumerate(parse_scoped_tokens(scoped), start=1):
            try:
                check_secret_strength(f"webhook token #{number}", grant.token)
            except ValueError as exc:  # named by its own variable, not the section's
                raise ConfigError(f"{prefix}WEBHOOK_TOKENS", str(exc)) from None
        tokens = value.webhook_token.get_secret_value() if value.webhook_token else ""
        for number, token in enumerate(t.strip() for t in tokens.split(",") if t.strip()):
            try:
                check_secret_strength(f"webhook token #{number + 1}", token)
            except ValueError as exc:
                raise ConfigError(f"{prefix}WEBHOOK_TOKEN", str(exc)) from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from cryptography.fernet import Fernet

        for index, part in enumerate(value.get_secret_value().split(",")):
            try:
                Fernet(part.strip())
            except ValueError:
                raise ValueError(
                    f"key {index + 1} is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return value

    @property
    def worker_concurrency(self) -> int:
        """``SMOKEHOUSE_WORKER_CONCURRENCY`` (owned by the worker section)."""
        return self.worker.concurrency

    @property
    def gitlab_webhook_token(self) -> SecretStr | None:
        """``SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN`` (owned by the gitlab section)."""
        return self.gitlab.webhook_token

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
        """The effective configuration, every section, secrets and URL passwords hidden
        (``smokehouse config``)."""
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
        }
        for name, value in _shown(self).items():
            shown.setdefault(name, value)
        return shown


def _shown(model: BaseModel) -> dict[str, Any]:
    """A model's fields for display: sections nested, secrets as ``****``, URL passwords hidden."""
    shown: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            shown[name] = _shown(value)
        elif isinstance(value, SecretStr):
            shown[name] = "****" if value.get_secret_value() else None
        elif isinstance(value, Path):
            shown[name] = str(value)
        elif isinstance(value, str) and "://" in value:
            shown[name] = _mask_url(value)
        else:
            shown[name] = value
    return shown


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return parts._replace(netloc=netloc).geturl()
    return url


#: Root keyword arguments kept from before the tree, and the section field each now sets.
_MOVED = {
    "worker_concurrency": ("worker", "concurrency"),
    "gitlab_webhook_token": ("gitlab", "webhook_token"),
}

Section = TypeVar("Section", bound=BaseSettings)


def load_settings(**overrides: Any) -> Settings:
    """Build the whole tree, turning pydantic's report on any section into a one-line
    ``ConfigError`` naming the environment variable.

    Overrides are root fields, or a section by name (a section instance, or a dict of its
    fields: the rest of that section is still read from the environment)."""
    try:
        for old, (section, name) in _MOVED.items():
            if old in overrides:
                given = overrides.setdefault(section, {})
                if isinstance(given, dict):
                    given[name] = overrides.pop(old)
        for name, field in Settings.model_fields.items():
            kind = field.annotation
            given = overrides.get(name)
            if (
                isinstance(given, dict)
                and isinstance(kind, type)
                and issubclass(kind, BaseSettings)
            ):
                overrides[name] = kind(**given)
        return Settings(**overrides)
    except ValidationError as exc:
        raise _one_line(exc) from None


def load_section(kind: type[Section], **overrides: Any) -> Section:
    """One section alone (tests, tools), with the same one-line errors."""
    try:
        return kind(**overrides)
    except ValidationError as exc:
        raise _one_line(exc) from None


def _sections() -> dict[str, type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {}
    pending: list[type[BaseSettings]] = [Settings]
    while pending:
        kind = pending.pop()
        found[kind.__name__] = kind
        for field in kind.model_fields.values():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseSettings):
                pending.append(sub)
    return found


def _one_line(exc: ValidationError) -> ConfigError:
    """``SMOKEHOUSE_SCALING_MAX_WORKERS: Input should be ...``: the first error, named by the
    variable a user sets (a section's own prefix, followed down nested sections)."""
    error = exc.errors()[0]
    kind = _sections().get(exc.title, Settings)
    name = "settings"
    for part in error["loc"]:
        field = kind.model_fields.get(str(part))
        sub = field.annotation if field is not None else None
        if isinstance(sub, type) and issubclass(sub, BaseSettings):
            kind = sub
            continue
        name = str(part)
        break
    prefix = str(kind.model_config.get("env_prefix", ENV_PREFIX))
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigError(prefix + name.upper(), message)
