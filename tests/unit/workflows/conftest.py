"""Helpers for the ASL interpreter tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from app.workflows.asl import Completion, Env, ScheduleTask, compile_machine, run_to_completion

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def env(seed: int = 0, now: datetime = T0) -> Env:
    return Env.seeded(now, seed)


def run(
    definition: dict[str, Any],
    input: Any = None,
    tasks: Callable[[ScheduleTask], Any] | dict[str, Any] | None = None,
    *,
    roundtrip: bool = True,
    seed: int = 0,
) -> Completion:
    """Compile and run ``definition``; ``tasks`` maps a state name to an output or a callable."""
    table = tasks

    def runner(command: ScheduleTask) -> Any:
        if callable(table):
            return table(command)
        assert table is not None, f"unexpected task {command.state_name}"
        value = table[command.state_name]
        return value(command) if callable(value) else value

    return run_to_completion(
        compile_machine(definition),
        {} if input is None else input,
        runner,
        env(seed),
        json_roundtrip=roundtrip,
    )


def types(completion: Completion) -> list[str]:
    return [h.type for h in completion.history]


@pytest.fixture
def t0() -> datetime:
    return T0
