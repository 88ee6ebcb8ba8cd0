"""CI runner settings: the lifecycle (``SMOKEHOUSE_RUNNERS_*``) and GitLab (``SMOKEHOUSE_GITLAB_*``:
the API client and the webhook's shared secrets)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from app.config.section import section_config

RUNNERS_PREFIX = "SMOKEHOUSE_RUNNERS_"
GITLAB_PREFIX = "SMOKEHOUSE_GITLAB_"
#: EventBridge's event size quota: a bigger webhook could not be put on the bus anyway.
MAX_WEBHOOK_BYTES = 256 * 1024


class RunnersSettings(BaseSettings):
    """Runner profiles and the lifecycle's clocks."""

    model_config = section_config(RUNNERS_PREFIX)

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


class GitLabSettings(BaseSettings):
    """Where the GitLab API is and how to authenticate (``SMOKEHOUSE_GITLAB_*``)."""

    model_config = section_config(GITLAB_PREFIX)

    url: str | None = Field(default=None, description="GitLab base URL, e.g. https://gitlab.com")
    api_token: SecretStr | None = Field(default=None, description="Sent as PRIVATE-TOKEN.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_token: SecretStr | None = Field(
        default=None, description="Accepted X-Gitlab-Token values, comma-separated."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value
