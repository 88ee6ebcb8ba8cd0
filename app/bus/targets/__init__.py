"""Target adapters, chosen by ARN. Add a kind by adding a module and listing it in ADAPTERS."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.bus.targets.base import DeliveryContext, TargetAdapter, TargetFailure
from app.bus.targets.handler import HandlerTarget

ADAPTERS: list[TargetAdapter] = [HandlerTarget()]


def adapter_for(arn: str) -> TargetAdapter | None:
    return next((a for a in ADAPTERS if a.accepts(arn)), None)


def validate_target(session: Session, spec: dict[str, Any]) -> str | None:
    adapter = adapter_for(spec["Arn"])
    if adapter is None:
        return f"Target ARN {spec['Arn']} is not a supported target type."
    return adapter.validate(session, spec)


__all__ = [
    "ADAPTERS",
    "DeliveryContext",
    "TargetAdapter",
    "TargetFailure",
    "adapter_for",
    "validate_target",
]
