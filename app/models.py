"""Import every domain's models so Alembic and tests see the whole schema."""

from app.bus.models import (
    ApiDestination,
    Archive,
    ArchivedEvent,
    Connection,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    Event,
    EventBus,
    Replay,
    Rule,
    Target,
)
from app.system.models import Ping

__all__ = [
    "ApiDestination",
    "Archive",
    "ArchivedEvent",
    "Connection",
    "DeadLetter",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "EventBus",
    "Ping",
    "Replay",
    "Rule",
    "Target",
]
