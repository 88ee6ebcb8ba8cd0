"""``system``: version, mode and the live state of each component (the plumbing, proven)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

import app
from app.db import get_database
from app.graphql.context import Context, IsAuthenticated
from app.health.probes import check_all
from app.system.service import last_ping


@strawberry.type
class Component:
    name: str
    ok: bool
    detail: str
    latency_ms: float


@strawberry.type
class System:
    version: str
    mode: str
    region: str
    components: list[Component]
    last_worker_ping: datetime | None = strawberry.field(
        description="When a worker last processed a ping (proves broker → worker → database)."
    )


async def resolve_system(info: Info[Context, Any]) -> System:
    settings = info.context.settings
    statuses = await check_all(settings)
    with get_database(settings.sqlalchemy_url).session() as session:
        ping = last_ping(session)
    return System(
        version=app.__version__,
        mode=settings.mode,
        region=settings.region,
        components=[
            Component(name=s.name, ok=s.ok, detail=s.detail, latency_ms=s.latency_ms)
            for s in statuses
        ],
        last_worker_ping=ping.received_at if ping else None,
    )


@strawberry.type
class SystemQuery:
    system: System = strawberry.field(resolver=resolve_system, permission_classes=[IsAuthenticated])
