"""Runner settings: ``settings.runners`` (``SMOKEHOUSE_RUNNERS_*``) and ``settings.gitlab``
(``SMOKEHOUSE_GITLAB_*``), see :mod:`app.config.runners`.

The webhook's shared secrets are ``SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN``, a comma-separated list so
each project or group may have its own.
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings, load_section
from app.config.runners import MAX_WEBHOOK_BYTES, RUNNERS_PREFIX, RunnersSettings

PREFIX = RUNNERS_PREFIX
__all__ = [
    "MAX_WEBHOOK_BYTES",
    "PREFIX",
    "RunnersSettings",
    "load_runners_settings",
    "profiles_path",
    "webhook_tokens",
]


def load_runners_settings(**overrides: object) -> RunnersSettings:
    return load_section(RunnersSettings, **overrides)


def profiles_path(settings: Settings, runners: RunnersSettings | None = None) -> Path:
    runners = runners or settings.runners
    if runners.profiles_file is not None:
        return runners.profiles_file
    base = settings.definitions_dir or settings.data_dir
    return base / "runners.yaml"


def webhook_tokens(settings: Settings) -> list[str]:
    """The accepted ``X-Gitlab-Token`` values (comma-separated; blanks ignored)."""
    if settings.gitlab.webhook_token is None:
        return []
    raw = settings.gitlab.webhook_token.get_secret_value()
    return [token.strip() for token in raw.split(",") if token.strip()]
