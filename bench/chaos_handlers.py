"""Handlers the chaos bench's workers load: each records the effect of one event or execution.

The effect table is the consumer's own: ``(kind, key, invocation)``, unique per invocation -- the
consumer's dedupe on the id smokehouse hands it (the delivery id for a rule target, the task's
invocation id for a workflow step), as its docs tell a consumer to do. A *duplicated* effect is
then one key applied under two different invocations: two deliveries for one event, or one
execution run twice as two -- what at-least-once must never turn into.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine, text

from app.handlers import HandlerContext, handler

_engine = None


def _db() -> Any:
    global _engine
    if _engine is None:
        url = os.environ["SMOKEHOUSE_DATABASE_URL"]
        _engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    return _engine


@handler("chaos.effect")
def effect(payload: Any, context: HandlerContext) -> Any:
    detail = payload.get("detail", payload) if isinstance(payload, dict) else {}
    kind, key = str(detail.get("kind", "event")), str(detail["key"])
    with _db().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO chaos_effects (kind, key, invocation) VALUES (:k, :key, :i) "
                "ON CONFLICT (kind, invocation) DO NOTHING"
            ),
            {"k": kind, "key": key, "i": context.invocation_id},
        )
    return {"ok": key}
