"""The webhook's storage on both databases: a group of webhooks is one transaction with dedupe
inside the group and against earlier ones; the group-commit batcher answers each request only
after its group committed; a database that is down is an error for every waiting request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from app.bus.models import Event
from app.config import Settings
from app.db import get_database
from app.runners.batcher import Batcher
from app.runners.models import WebhookReceipt
from app.runners.webhook import Accepted, Prepared, accept_many, prepare
from tests.integration.runners.payloads import headers, job_hook

pytestmark = pytest.mark.integration


def item(job_id: int, key: str | None = None) -> Prepared:
    """A webhook; without ``key`` it has no Idempotency-Key nor event UUID (older GitLab)."""
    sent = {k.lower(): v for k, v in headers(key).items()}
    if key is None:
        del sent["idempotency-key"], sent["x-gitlab-event-uuid"]
    return prepare(json.dumps(job_hook(job_id, "running")).encode(), sent)


def counts(settings: Settings) -> tuple[int, int]:
    with get_database(settings.sqlalchemy_url).session() as session:
        events = session.scalar(select(func.count()).select_from(Event))
        receipts = session.scalar(select(func.count()).select_from(WebhookReceipt))
    return int(events or 0), int(receipts or 0)


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    return settings_factory(database_url=database_url)


def test_a_group_dedupes_within_itself_and_against_earlier_groups(settings: Settings) -> None:
    first = accept_many(settings, [item(1, "a"), item(2, "b"), item(1, "a"), item(3)])
    assert [type(o) for o in first] == [Accepted] * 4
    assert [o.duplicate for o in first if isinstance(o, Accepted)] == [False, False, True, False]
    again = accept_many(settings, [item(1, "a"), item(4, "c"), item(3)])
    assert [o.duplicate for o in again if isinstance(o, Accepted)] == [True, False, True]
    # events: a, b, (no header key), c; receipts: a, b, c and the payload key of each of the four
    assert counts(settings) == (4, 7)


def test_a_resend_without_headers_is_a_duplicate_of_the_delivery_with_them(
    settings: Settings,
) -> None:
    first = accept_many(settings, [item(5, "with-headers")])
    resent = accept_many(settings, [item(5)])  # same payload, the headers stripped
    assert [o.duplicate for o in first + resent if isinstance(o, Accepted)] == [False, True]
    # ...but a headerless delivery never makes one with headers a duplicate (a forged hook
    # without headers cannot shadow GitLab's real one)
    early = accept_many(settings, [item(6), item(6, "real")])
    assert [o.duplicate for o in early if isinstance(o, Accepted)] == [False, False]
    assert counts(settings) == (3, 4)


def test_more_than_ten_in_one_group(settings: Settings) -> None:
    outcomes = accept_many(settings, [item(n, f"k{n}") for n in range(25)])
    assert all(isinstance(o, Accepted) and not o.duplicate for o in outcomes)
    assert counts(settings) == (25, 50)  # each: its header key and its payload key


def test_the_batcher_answers_every_request_after_its_commit(settings: Settings) -> None:
    async def burst() -> list[Any]:
        batcher = Batcher(settings)
        requests = [item(n, f"key-{n % 30}") for n in range(40)]  # 10 repeats of earlier keys
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    outcomes = asyncio.run(burst())
    fresh = [o for o in outcomes if isinstance(o, Accepted) and not o.duplicate]
    assert len(fresh) == 30
    assert len(outcomes) - len(fresh) == 10
    assert counts(settings) == (30, 60)


def test_a_database_that_is_down_fails_every_waiting_request(
    settings_factory: Callable[..., Settings],
) -> None:
    down = settings_factory(database_url="postgresql://nobody@127.0.0.1:1/none")

    async def submit() -> list[Any]:
        batcher = Batcher(down)
        return await asyncio.gather(
            *(batcher.submit(item(n)) for n in range(3)), return_exceptions=True
        )

    assert all(isinstance(o, Exception) for o in asyncio.run(submit()))


def test_a_recorded_only_key_taken_meanwhile_does_not_drop_the_delivery(
    settings: Settings,
) -> None:
    """Its ``also`` key conflicting at insert (here: with its own key, as a concurrent writer
    would) makes the delivery go again without it, not become a duplicate."""
    real = item(7, "real-delivery")
    clash = Prepared(real.entry, real.keys, real.keys)
    [outcome] = accept_many(settings, [clash])
    assert isinstance(outcome, Accepted)
    assert not outcome.duplicate
    assert counts(settings) == (1, 1)
