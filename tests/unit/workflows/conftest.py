"""Helpers for the ASL interpreter tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from app.workflows.asl import (
    Completion,
    Env,
    ExecutionState,
    ScheduleTask,
    compile_machine,
    interpreter,
    run_to_completion,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def env(seed: int = 0, now: datetime = T0) -> Env:
    return Env.seeded(now, seed)


def run(
    definition: dict[str, Any],
    input: Any = None,
    tasks: Callable[[ScheduleTask], Any] | dict[str, Any] | None = None,
    *,
    roundtrip: bool = False,
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


@pytest.fixture(autouse=True)
def advance_is_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``advance`` in these tests leaves the state it was given as it was: states share
    their JSON documents (``ExecutionState.fork``), so a change in place would corrupt one.
    (``run`` drives the interpreter in memory, as an Express execution does; the durable
    engine's JSON round trip between events is checked here, step by step.)"""
    original = interpreter.advance

    def checked(machine: Any, state: Any, event: Any, env: Any) -> Any:
        before = None if state is None else state.to_json()
        result = original(machine, state, event, env)
        if state is not None:
            assert state.to_json() == before, f"advance changed its input state on {event}"
        text = result.state.to_json()  # and what a durable host would persist restores exactly
        assert ExecutionState.from_json(text).to_json() == text
        return result

    monkeypatch.setattr(interpreter, "advance", checked)


def types(completion: Completion) -> list[str]:
    return [h.type for h in completion.history]


@pytest.fixture
def t0() -> datetime:
    return T0
