"""``smokehouse queue send`` / ``queue depth`` / ``scaling once`` / ``scaling workers`` on the
embedded stack (run in-process with Typer's runner until they are mounted on the root command)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from app.config import Settings
from app.migrate import upgrade
from app.queues.cli import queue_cli
from app.scaling.cli import scaling_cli

pytestmark = pytest.mark.integration


def test_send_then_depth_then_one_pass(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("SMOKEHOUSE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SMOKEHOUSE_SCALING_QUEUES", "work")
    upgrade(settings.sqlalchemy_url)
    runner = CliRunner()

    sent = runner.invoke(
        queue_cli, ["send", "work", "echo", "--payload", '{"n": 1}', "--count", "3"]
    )
    assert sent.exit_code == 0, sent.output
    assert len(sent.output.split()) == 3

    depth = runner.invoke(queue_cli, ["depth", "work,other"])
    assert depth.exit_code == 0, depth.output
    assert json.loads(depth.output) == {
        "work": {"ready": 3, "unacked": 0},
        "other": {"ready": 0, "unacked": 0},
    }

    once = runner.invoke(scaling_cli, ["once"])
    assert once.exit_code == 0, once.output
    decision = json.loads(once.output.strip().splitlines()[-1])
    assert (decision["queue"], decision["desired"], decision["demand"]) == ("work", 2, 3)

    listed = runner.invoke(scaling_cli, ["workers"])
    assert listed.exit_code == 0  # backend "none": nothing started, nothing listed
    assert listed.output == ""


def test_bad_payload_is_one_line(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("SMOKEHOUSE_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(queue_cli, ["send", "work", "echo", "--payload", "{nope"])
    assert result.exit_code == 2
    assert "--payload is not JSON" in result.output
