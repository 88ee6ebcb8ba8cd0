"""Registered Python handlers: smokehouse's Lambda functions.

One registry serves every place that runs user code by name: bus targets
(``arn:smokehouse:handler:<name>``), workflow Task states and work-queue messages. A handler takes
the JSON payload and a context, returns a JSON-able result, and raises to fail. It runs at least
once: ``context.invocation_id`` is stable across retries of the same delivery, for dedupe.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.config import ConfigError, Settings, load_settings

HandlerFunction = Callable[[Any, "HandlerContext"], Any]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    name: str
    invocation_id: str
    attempt: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    #: The caller's settings (bus delivery, workflow task, queue message); see ``app_settings``.
    settings: Settings | None = None

    def app_settings(self) -> Settings:
        """The caller's settings, else read from the environment (which is what started a
        worker process; only a caller that passes none pays for the read)."""
        return self.settings if self.settings is not None else load_settings()


class UnknownHandler(LookupError):
    pass


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, HandlerFunction] = {}

    def register(self, name: str) -> Callable[[HandlerFunction], HandlerFunction]:
        def decorate(function: HandlerFunction) -> HandlerFunction:
            if name in self._handlers and self._handlers[name] is not function:
                raise ValueError(f"handler {name!r} is already registered")
            self._handlers[name] = function
            return function

        return decorate

    def get(self, name: str) -> HandlerFunction:
        try:
            return self._handlers[name]
        except KeyError:
            raise UnknownHandler(f"no handler named {name!r} is registered") from None

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def names(self) -> list[str]:
        return sorted(self._handlers)


handlers = HandlerRegistry()
handler = handlers.register

BUILTIN_MODULES: tuple[str, ...] = (
    "app.builtin_handlers",
    "app.runners.handlers",
    "app.iot.handlers",
    "app.iot.alarms.handlers",
)


def load_handler_modules(modules: Iterable[str] = ()) -> None:
    """Import the modules that register handlers (built-ins plus the user's)."""
    for module in (*BUILTIN_MODULES, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                "SMOKEHOUSE_HANDLER_MODULES", f"cannot import {module}: {exc}"
            ) from None
