"""Group commit for the webhook: one transaction for whatever arrived while the last one ran.

Each request awaits its own outcome, which is set only after its group committed, so nothing is
acknowledged before it is durable; the deliveries are enqueued after the answers went out (a
crash in between leaves them to the outbox sweeper, as any lost enqueue). At low load a group
is one request and adds no wait; at high load a group holds many, and the transaction is shared
instead of requests queueing up behind one another.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.runners.webhook import Outcome, Prepared, store_many

log = logging.getLogger("smokehouse.runners")

MAX_GROUP = 200

Waiting = tuple[Prepared, "asyncio.Future[Outcome]"]


class Batcher:
    """One per application and event loop; started lazily by the first request."""

    def __init__(self, settings: Settings, max_group: int = MAX_GROUP) -> None:
        self.settings = settings
        self.max_group = max_group
        self.queue: asyncio.Queue[Waiting] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.enqueuing: set[asyncio.Task[None]] = set()

    async def submit(self, prepared: Prepared) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self.queue.put((prepared, future))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="gitlab-webhook-batcher")
        return await future

    async def _run(self) -> None:
        while True:
            group = [await self.queue.get()]
            while len(group) < self.max_group and not self.queue.empty():
                group.append(self.queue.get_nowait())
            try:
                outcomes, later = await run_in_threadpool(
                    store_many, self.settings, [prepared for prepared, _ in group]
                )
            except Exception as exc:  # the database is down: every waiting request is told
                log.warning("could not store %d webhooks: %s", len(group), exc)
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
            if later:  # the group's after-commit work, deliberately after the answers
                task = asyncio.create_task(run_in_threadpool(later.run))
                self.enqueuing.add(task)  # keep a reference until it is done
                task.add_done_callback(self.enqueuing.discard)


def batcher_for(state: object, settings: Settings) -> Batcher:
    """The application's batcher (kept on ``app.state``), made on first use."""
    found = getattr(state, "runners_batcher", None)
    if not isinstance(found, Batcher):
        found = Batcher(settings)
        setattr(state, "runners_batcher", found)  # noqa: B010
    return found


__all__ = ["Batcher", "batcher_for"]
