"""Scaling over GraphQL: workers (live or all), decisions and queues, as the registry stored them.
Executed on a schema with just the scaling root, until it is merged into the app's schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry
from strawberry.tools import merge_types

from app.config import Settings
from app.db import get_database, utcnow
from app.graphql.scaling import ScalingQuery
from app.scaling import registry
from app.scaling.autoscaler import Autoscaler
from app.scaling.backends import NoBackend
from app.scaling.depth import QueueDepth
from app.scaling.settings import load_scaling_settings

pytestmark = pytest.mark.integration

SCHEMA = strawberry.Schema(query=merge_types("Query", (ScalingQuery,)))


def run(settings: Settings, query: str, key: object = "k") -> Any:
    context = SimpleNamespace(settings=settings, key=key)
    return asyncio.run(SCHEMA.execute(query, context_value=context))


def test_workers_decisions_and_queues(
    settings_factory: Callable[..., Settings], database_url: str
) -> None:
    settings = settings_factory(database_url=database_url)
    now = utcnow()
    with get_database(settings.sqlalchemy_url).session() as session:
        fresh = registry.WorkerInfo("fresh", ["work"], 2, "h", 1)
        registry.register(session, fresh, now)
        registry.heartbeat(session, fresh, registry.Heartbeat("busy", "t[1]", 1), now)
        registry.register(session, registry.WorkerInfo("old", ["work"], 2, "h", 2), now)
        registry.mark_stopped(session, "old", now)

    def depth(url: str, queues: Any) -> dict[str, QueueDepth]:
        return {q: QueueDepth(q, 7, 0) for q in queues}

    scaling = load_scaling_settings(queues="work", max_workers=3)
    autoscaler = Autoscaler(settings, scaling, NoBackend(), depth_probe=depth, publish=False)
    autoscaler.run_once(now + timedelta(seconds=1))

    result = run(
        settings,
        "{ workers { id state alive currentTask } all: workers(includeGone: true) { id }"
        '  scalingDecisions(queue: "work") { previous desired queued reason backend }'
        "  workQueues { name desired } }",
    )
    assert result.errors is None, result.errors
    assert result.data["workers"] == [
        {"id": "fresh", "state": "busy", "alive": True, "currentTask": "t[1]"}
    ]
    assert sorted(w["id"] for w in result.data["all"]) == ["fresh", "old"]
    [decision] = result.data["scalingDecisions"]
    assert (decision["previous"], decision["desired"], decision["queued"]) == (1, 3, 7)
    assert result.data["workQueues"] == [{"name": "work", "desired": 3}]


def test_anonymous_is_refused(settings_factory: Callable[..., Settings]) -> None:
    result = run(settings_factory(), "{ workQueues { name } }", key=None)
    assert result.errors is not None
    assert "Not authenticated" in result.errors[0].message
