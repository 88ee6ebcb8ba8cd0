"""The task-token holder registry: other domains register once, in order, without workflows
importing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from app.config import Settings
from app.workflows import tokens


@dataclass(frozen=True)
class Holder:
    name: str

    def succeed(self, settings: Settings, token: str, output: Any) -> bool:
        return False

    def fail(self, settings: Settings, token: str, error: str | None, cause: str | None) -> bool:
        return False

    def heartbeat(self, settings: Settings, token: str) -> bool:
        return False


def test_holders_register_once_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_holders", [])
    tokens.register_token_holder(Holder("a"))
    tokens.register_token_holder(Holder("b"))
    tokens.register_token_holder(Holder("a"))  # a module imported again registers nothing new
    assert tokens.token_holders() == (Holder("a"), Holder("b"))


def test_work_queue_messages_register_when_imported() -> None:
    from app.queues.messages import MessageTokens

    assert MessageTokens() in tokens.token_holders()
