"""Handlers that ship with smokehouse."""

from __future__ import annotations

import logging
from typing import Any

from app.handlers import HandlerContext, handler

log = logging.getLogger("smokehouse.handlers")


@handler("log")
def log_payload(payload: Any, context: HandlerContext) -> Any:
    """Write the payload to the log: the simplest target, for trying rules out."""
    log.info(
        "handler log received", extra={"payload": payload, "invocation": context.invocation_id}
    )
    return payload


@handler("echo")
def echo(payload: Any, context: HandlerContext) -> Any:
    """Return the payload unchanged (a Pass state you can call)."""
    return payload
