"""Runner settings: ``settings.runners`` (``SMOKEHOUSE_RUNNERS_*``) and ``settings.gitlab``
(``SMOKEHOUSE_GITLAB_*``), see :mod:`app.config.runners`.

The webhook's shared secrets: ``SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS``, each token bound to the
projects and groups it may report for, and the older ``SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN``, global
tokens (any project) kept for compatibility and warned about at start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.config import Settings, load_section
from app.config.runners import (
    MAX_WEBHOOK_BYTES,
    RUNNERS_PREFIX,
    RunnersSettings,
    TokenScope,
    WebhookGrant,
)
from app.config.runners import webhook_grants as _section_grants

PREFIX = RUNNERS_PREFIX
__all__ = [
    "MAX_WEBHOOK_BYTES",
    "PREFIX",
    "RunnersSettings",
    "TokenScope",
    "WebhookGrant",
    "load_runners_settings",
    "profiles_path",
    "warn_global_tokens",
    "webhook_grants",
    "webhook_tokens",
]

log = logging.getLogger("smokehouse.runners")


def load_runners_settings(**overrides: object) -> RunnersSettings:
    return load_section(RunnersSettings, **overrides)


def profiles_path(settings: Settings, runners: RunnersSettings | None = None) -> Path:
    runners = runners or settings.runners
    if runners.profiles_file is not None:
        return runners.profiles_file
    base = settings.definitions_dir or settings.data_dir
    return base / "runners.yaml"


def webhook_grants(settings: Settings) -> list[WebhookGrant]:
    """Every accepted ``X-Gitlab-Token`` with the projects it may report for."""
    return _section_grants(settings.gitlab)


def webhook_tokens(settings: Settings) -> list[str]:
    """The accepted ``X-Gitlab-Token`` values, scoped and global (for callers that only ask
    "is this one of ours?"; the webhook itself checks the scope too)."""
    return [grant.token for grant in webhook_grants(settings)]


def warn_global_tokens(settings: Settings) -> int:
    """Log one warning per global webhook token (at start); returns how many there are."""
    found = [grant for grant in webhook_grants(settings) if grant.is_global]
    for grant in found:
        log.warning(
            "GitLab webhook %s may report for every project: whoever holds it can start and "
            "stop any project's runners; bind tokens to projects/groups with "
            "SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS",
            grant.label,
        )
    return len(found)
