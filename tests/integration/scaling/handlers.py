"""Handlers the scaling tests' workers load (``SMOKEHOUSE_HANDLER_MODULES``)."""

from __future__ import annotations

import time
from typing import Any

from app.handlers import HandlerContext, handler


@handler("scaling-test-sleep")
def sleep(payload: Any, context: HandlerContext) -> Any:
    """Hold the worker busy for ``payload["seconds"]``."""
    time.sleep(float(payload.get("seconds", 1)))
    return payload


@handler("scaling-test-mark")
def mark(payload: Any, context: HandlerContext) -> Any:
    """Sleep ``seconds``, then append ``<worker id> <invocation id>`` to the file ``path``."""
    import os

    time.sleep(float(payload.get("seconds", 0)))
    with open(payload["path"], "a") as out:
        out.write(f"{os.environ.get('SMOKEHOUSE_WORKER_ID', '?')} {context.invocation_id}\n")
    return None
