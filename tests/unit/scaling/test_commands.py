"""Pools that run a program of yours (``SMOKEHOUSE_SCALING_COMMANDS``): how the process backend
starts them, and the settings it refuses."""

from __future__ import annotations

import pytest

from app.config import ConfigError
from app.scaling.backends.process import ProcessBackend
from app.scaling.settings import load_scaling_settings


def test_a_command_pool_runs_its_program_under_the_registry_shim() -> None:
    backend = ProcessBackend(
        concurrency=2,
        env={},
        argv=["python", "-m", "app.cli", "worker"],
        commands={"orders": "python poller.py --flag 'two words'"},
    )
    assert backend.command("orders") == [
        *["python", "-m", "app.cli", "scaling", "exec", "--pool=orders", "--"],
        *["python", "poller.py", "--flag", "two words"],
    ]
    # other pools still run smokehouse's own worker
    assert backend.command("default") == [
        *["python", "-m", "app.cli", "worker", "--queues=default", "--concurrency=2"]
    ]


def test_commands_arrive_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_SCALING_BACKEND", "process")
    monkeypatch.setenv("SMOKEHOUSE_SCALING_COMMANDS", '{"orders": "python poller.py"}')
    assert load_scaling_settings().command_map == {"orders": "python poller.py"}


@pytest.mark.parametrize("backend", ["docker", "kubernetes"])
def test_commands_need_the_process_backend(backend: str) -> None:
    with pytest.raises(ConfigError, match="needs the process backend"):
        load_scaling_settings(backend=backend, commands={"orders": "python poller.py"})


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty command"):
        load_scaling_settings(backend="process", commands={"orders": "  "})


@pytest.mark.parametrize(
    ("raw", "error"),
    [("{oops", "not JSON"), ('["python poller.py"]', "JSON object")],
)
def test_a_malformed_commands_variable_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, raw: str, error: str
) -> None:
    monkeypatch.setenv("SMOKEHOUSE_SCALING_COMMANDS", raw)
    with pytest.raises(ConfigError, match=error):
        load_scaling_settings()


def test_an_empty_commands_variable_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_SCALING_COMMANDS", "")  # as .env.example leaves it
    assert load_scaling_settings().command_map == {}
