"""Run the real ``smokehouse`` command in a subprocess with a clean SMOKEHOUSE_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.services import ROOT


def cli_env(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOKEHOUSE_")}
    env.update({f"SMOKEHOUSE_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONPATH"] = str(ROOT)
    return env


def smokehouse_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def run_cli(
    *args: str, cwd: Path, timeout: float = 60, **settings: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        smokehouse_argv(*args),
        cwd=cwd,
        env=cli_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
