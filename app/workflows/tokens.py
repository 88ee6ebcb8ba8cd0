"""Task-token holders besides workflow tasks: who else hands out the tokens that
``SendTaskSuccess``/``SendTaskFailure``/``SendTaskHeartbeat`` carry.

A token no workflow task holds is offered to each registered holder in turn (registration
order); the first that holds it answers. Other domains register here (the work-queue messages,
:mod:`app.queues.messages`, when imported), so the workflows never import them.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.config import Settings


class TokenHolder(Protocol):
    """Each method returns False when the holder does not hold ``token``; one that holds it but
    no longer waits on it raises the workflows' ``TaskTimedOut``, as a finished task does."""

    def succeed(self, settings: Settings, token: str, output: Any) -> bool: ...

    def fail(
        self, settings: Settings, token: str, error: str | None, cause: str | None
    ) -> bool: ...

    def heartbeat(self, settings: Settings, token: str) -> bool: ...


_holders: list[TokenHolder] = []


def register_token_holder(holder: TokenHolder) -> None:
    """Add ``holder`` (once: an equal holder already registered is not added again)."""
    if holder not in _holders:
        _holders.append(holder)


def token_holders() -> tuple[TokenHolder, ...]:
    return tuple(_holders)
