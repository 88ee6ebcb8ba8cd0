"""Settings on a migrated database of their own, and DeliveryContexts built the way the delivery
module builds them, so each adapter is exercised alone against its real service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.bus.targets.base import DeliveryContext
from app.bus.transform import render_input
from app.config import Settings
from app.db import Database, _databases, get_database
from tests.services import migrate

RULE_ARN = "arn:aws:events:us-east-1:000000000000:rule/source-rule"

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "0f6b7c1e-3d1a-4c5e-9b8a-2f4d6e8a0c11",
    "detail-type": "Order Placed",
    "source": "shop.orders",
    "account": "000000000000",
    "time": "2024-05-01T12:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:shop:order/o-1"],
    "detail": {"order": "o-1", "state": "RUNNING", "total": 12.5},
}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Iterator[Settings]:
    """Settings on a tmp data dir (embedded SQLite database and broker), database migrated."""
    value = settings_factory(egress={"allow": "127.0.0.1"})  # the tests' own HTTP servers
    migrate(value.sqlalchemy_url)
    yield value
    database = _databases.pop(value.sqlalchemy_url, None)
    if database is not None:
        database.dispose()


@pytest.fixture
def database(settings: Settings) -> Database:
    return get_database(settings.sqlalchemy_url)


class Enqueued(list[list[str]]):
    """Records what an adapter hands to ``enqueue_deliveries``."""

    def __call__(self, ids: list[str]) -> None:
        self.append(list(ids))


def make_context(
    settings: Settings,
    spec: dict[str, Any],
    *,
    event: dict[str, Any] | None = None,
    delivery_id: str = "3c0d2b8e-51b2-4f0c-8d1e-7a9b6c5d4e3f",
    rule_arn: str = RULE_ARN,
    enqueued: Enqueued | None = None,
) -> tuple[DeliveryContext, str]:
    """A context and the payload the delivery module would render for it."""
    event = EVENT if event is None else event
    context = DeliveryContext(
        delivery_id=delivery_id,
        attempt=1,
        event=event,
        spec=spec,
        rule_arn=rule_arn,
        settings=settings,
        database=get_database(settings.sqlalchemy_url),
        enqueue_deliveries=enqueued if enqueued is not None else Enqueued(),
    )
    payload = render_input(
        spec,
        event,
        rule_arn=rule_arn,
        rule_name=rule_arn.rsplit("/", 1)[-1],
        ingestion_time=datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC),
    )
    return context, payload
