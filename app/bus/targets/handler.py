"""``arn:smokehouse:handler:<name>``: run a registered Python handler (the Lambda target)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from app.bus.targets.base import DeliveryContext, TargetFailure
from app.handlers import HandlerContext, UnknownHandler, handlers

PREFIX = "arn:smokehouse:handler:"


class HandlerTarget:
    kind = "handler"

    def accepts(self, arn: str) -> bool:
        return arn.startswith(PREFIX)

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        name = spec["Arn"].removeprefix(PREFIX)
        if name not in handlers:
            return f"No handler named {name!r} is registered."
        return None

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        name = context.spec["Arn"].removeprefix(PREFIX)
        try:
            function = handlers.get(name)
        except UnknownHandler as exc:
            raise TargetFailure(str(exc), retryable=False, code="UnknownHandler") from None
        invocation = HandlerContext(
            name, context.delivery_id, context.attempt, settings=context.settings
        )
        try:
            argument: Any = json.loads(payload)
        except ValueError:  # a plain-text InputTemplate ("<instance> is in state <status>")
            argument = payload
        try:
            function(argument, invocation)
        except Exception as exc:  # a handler's failure is the delivery's failure, retried
            raise TargetFailure(
                f"{type(exc).__name__}: {exc}", retryable=True, code="HandlerError"
            ) from exc
        return None
