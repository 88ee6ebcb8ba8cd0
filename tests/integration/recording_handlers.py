"""Handlers for delivery tests, loaded by real workers via SMOKEHOUSE_HANDLER_MODULES.

Each attempt leaves files in $SMOKEHOUSE_TEST_RECORD_DIR: ``<invocation>.<attempt>.started`` when
it begins and ``<invocation>.<attempt>.done`` (holding the payload) when it returns, so a test can
tell a started-then-killed attempt from a finished one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from app.handlers import HandlerContext, handler


def _dir() -> Path:
    return Path(os.environ["SMOKEHOUSE_TEST_RECORD_DIR"])


@handler("test-record")
def record(payload: Any, context: HandlerContext) -> Any:
    stem = f"{context.invocation_id}.{context.attempt}"
    (_dir() / f"{stem}.started").write_text("")
    if isinstance(payload, dict):
        time.sleep(float(payload.get("detail", {}).get("sleep", 0)))
    (_dir() / f"{stem}.done").write_text(json.dumps(payload))
    return payload


def finished(record_dir: Path) -> list[Path]:
    return sorted(record_dir.glob("*.done"))


def started(record_dir: Path) -> list[Path]:
    return sorted(record_dir.glob("*.started"))
