"""Target adapters, chosen by ARN. Add a kind by adding a module and listing it in ADAPTERS."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.bus.targets.base import DeliveryContext, TargetAdapter, TargetFailure
from app.bus.targets.bus import EventBusTarget
from app.bus.targets.celery_queue import CeleryQueueTarget
from app.bus.targets.handler import HandlerTarget
from app.bus.targets.http import ApiDestinationTarget
from app.bus.targets.mqtt import MqttTarget
from app.bus.targets.state_machine import StateMachineTarget
from app.bus.transform import validate_input

ADAPTERS: list[TargetAdapter] = [
    HandlerTarget(),
    ApiDestinationTarget(),
    CeleryQueueTarget(),
    MqttTarget(),
    EventBusTarget(),
    StateMachineTarget(),
]


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
    "validate_target",
]
