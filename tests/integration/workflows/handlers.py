"""Handlers the workflow tests' state machines call, loaded by the real workers (and the API
process, for Express executions) through ``SMOKEHOUSE_HANDLER_MODULES``.

``wf-slow`` leaves ``<dir>/<ref>.<attempt>.started`` / ``.done`` files in
``$SMOKEHOUSE_TEST_RECORD_DIR`` so a test can kill a worker in the middle of a handler.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from app.handlers import HandlerContext, handler


class OrderRejected(Exception):
    """A domain error a Catch can name."""


class FlakyError(Exception):
    pass


@handler("wf-add")
def add(payload: Any, context: HandlerContext) -> Any:
    return {"sum": payload["a"] + payload["b"]}


@handler("wf-reject")
def reject(payload: Any, context: HandlerContext) -> Any:
    raise OrderRejected(f"order {payload.get('order')} rejected")


@handler("wf-flaky")
def flaky(payload: Any, context: HandlerContext) -> Any:
    """Fails with ``Flaky`` until it has been called ``fail`` times for this counter file."""
    counter = Path(payload["counter"])
    calls = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(calls + 1))
    if calls < payload["fail"]:
        raise FlakyError(f"call {calls + 1} fails")
    return {"calls": calls + 1}


def _record(path: Path, text: str) -> None:
    """Written whole or not at all: a test that sees the file kills the worker at once, and a
    file created but not yet written (``write_text`` opens, then writes) read as empty."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    partial.replace(path)


@handler("wf-slow")
def slow(payload: Any, context: HandlerContext) -> Any:
    """Sleeps, recording start and finish; the result depends on the input only."""
    record = Path(os.environ["SMOKEHOUSE_TEST_RECORD_DIR"])
    stem = f"{context.extra['state_name']}.{context.attempt}.{time.monotonic_ns()}"
    _record(record / f"{stem}.started", context.invocation_id)
    time.sleep(float(payload.get("sleep", 0)))
    _record(record / f"{stem}.done", context.invocation_id)
    return {"step": payload["step"], "total": payload["total"] + payload["step"]}


@handler("wf-ignore")
def ignore(payload: Any, context: HandlerContext) -> Any:
    """For .waitForTaskToken: hand the token over (here: nowhere, the test reads history)."""
    return None
