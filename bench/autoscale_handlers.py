"""The handler ``bench/autoscale.py``'s workers run (loaded through SMOKEHOUSE_HANDLER_MODULES)."""

from __future__ import annotations

import os
import time
from typing import Any

from app.handlers import HandlerContext, handler

SLEEP = "bench-autoscale-sleep"


def _mark(path: str, what: str, context: HandlerContext) -> None:
    worker = os.environ.get("SMOKEHOUSE_WORKER_ID", "?")
    line = f"{what} {context.invocation_id} {worker} {time.time():.6f}\n"
    # One short O_APPEND write per line: lines from concurrent workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@handler(SLEEP)
def sleep(payload: Any, context: HandlerContext) -> Any:
    """Record the start, sleep ``seconds``, record the finish (wall clock, with the task id)."""
    _mark(payload["path"], "start", context)
    time.sleep(float(payload["seconds"]))
    _mark(payload["path"], "end", context)
    return None
