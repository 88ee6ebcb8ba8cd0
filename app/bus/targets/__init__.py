"""Target adapters, chosen by ARN.

The bus's own kinds are listed here; a domain the bus must not know (workflows' state-machine
target) adds its kind with :func:`register_adapter` from :mod:`app.wiring`, so dependencies
point one way: workflows -> bus, never back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.bus.targets.base import DeliveryContext, TargetAdapter, TargetFailure
from app.bus.targets.bus import EventBusTarget
from app.bus.targets.celery_queue import CeleryQueueTarget
from app.bus.targets.handler import HandlerTarget
from app.bus.targets.http import ApiDestinationTarget
from app.bus.targets.mqtt import MqttTarget
from app.bus.transform import validate_input

ADAPTERS: list[TargetAdapter] = [
    HandlerTarget(),
    ApiDestinationTarget(),
    CeleryQueueTarget(),
    MqttTarget(),
    EventBusTarget(),
]


def register_adapter(adapter: TargetAdapter) -> None:
    """Add a target kind (once per class: registering again is a no-op)."""
    if not any(type(known) is type(adapter) for known in ADAPTERS):
        ADAPTERS.append(adapter)


def adapter_for(arn: str) -> TargetAdapter | None:
    return next((a for a in ADAPTERS if a.accepts(arn)), None)


def validate_target(session: Session, spec: dict[str, Any]) -> str | None:
    """PutTargets' check of one Target: a known kind, a valid InputPath/InputTransformer (the same
    rules for every kind), then what the kind itself requires."""
    adapter = adapter_for(spec["Arn"])
    if adapter is None:
        return f"Target ARN {spec['Arn']} is not a supported target type."
    return validate_input(spec) or adapter.validate(session, spec)


__all__ = [
    "ADAPTERS",
    "DeliveryContext",
    "TargetAdapter",
    "TargetFailure",
    "adapter_for",
    "register_adapter",
    "validate_target",
]
