"""Runner settings (``SMOKEHOUSE_RUNNERS_*``), kept beside the domain that reads them.

The webhook's shared secrets stay in ``SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN`` (app settings), now a
comma-separated list so each project or group may have its own; the GitLab API client reads
``SMOKEHOUSE_GITLAB_*`` (:mod:`app.runners.gitlab`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config import ConfigError, Settings

PREFIX = "SMOKEHOUSE_RUNNERS_"
#: EventBridge's event size quota: a bigger webhook could not be put on the bus anyway.
MAX_WEBHOOK_BYTES = 256 * 1024


class RunnersSettings(BaseSettings):
    """Runner profiles and the lifecycle's clocks."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    profiles_file: Path | None = Field(
        default=None,
        description="Runner profiles (YAML); unset: <definitions dir or data dir>/runners.yaml.",
    )
    webhook_max_bytes: int = Field(default=MAX_WEBHOOK_BYTES, ge=1024, le=MAX_WEBHOOK_BYTES)
    idle_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A runner whose job finished elsewhere (stolen) and that runs nothing is "
        "reclaimed after this long.",
    )
    launch_timeout_seconds: float = Field(
        default=900.0, gt=0, description="A runner still launching after this long has failed."
    )
    max_start_attempts: int = Field(default=3, ge=1, le=20)


def load_runners_settings(**overrides: object) -> RunnersSettings:
    try:
        return RunnersSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        raise ConfigError(PREFIX + field.upper(), str(error["msg"])) from None


def profiles_path(settings: Settings, runners: RunnersSettings) -> Path:
    if runners.profiles_file is not None:
        return runners.profiles_file
    base = settings.definitions_dir or settings.data_dir
    return base / "runners.yaml"


def webhook_tokens(settings: Settings) -> list[str]:
    """The accepted ``X-Gitlab-Token`` values (comma-separated; blanks ignored)."""
    if settings.gitlab_webhook_token is None:
        return []
    raw = settings.gitlab_webhook_token.get_secret_value()
    return [token.strip() for token in raw.split(",") if token.strip()]


@cache
def process_settings() -> tuple[Settings, RunnersSettings]:
    """Settings of a worker process, for handlers (which get no Settings of their own)."""
    from app.config import load_settings

    return load_settings(), load_runners_settings()
