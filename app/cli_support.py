"""What every ``smokehouse`` sub-command shares: one-line errors and settings set-up.

Kept apart from ``app.cli`` so the sub-apps (``app.bus.cli``, ``app.queues.cli``,
``app.scaling.cli``, …) can use it without importing the root command that mounts them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from app.aws.errors import AwsError
from app.common.files import make_private_dir
from app.config import ConfigError, Settings, load_settings
from app.logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"smokehouse: error: {' '.join(message.split())}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def friendly_errors(command: F) -> F:
    """Configuration mistakes exit 2 with one line naming the setting; domain errors (AWS-coded,
    or a ``ValueError`` such as a bad definition file) exit 1 with their message. No traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
        except (AwsError, ValueError) as exc:
            raise fail(str(exc), 1) from None

    return wrapper  # type: ignore[return-value]


def command_settings() -> Settings:
    """Settings and logging as every command sets them up, with the data dir in place."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    make_private_dir(settings.data_dir)
    return settings
