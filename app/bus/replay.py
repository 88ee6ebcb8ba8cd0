"""StartReplay's runner: send an archive's events from a time window back through the bus.

Replayed events carry ``replay-name`` (as on AWS), go only to the rules the replay names (or all),
and are never archived again. Event ids are derived from (replay, original id), so a runner that
died half-way and is started again skips what it already replayed instead of sending it twice.
Progress (``last_replayed_time``) is committed per batch; ``CANCELLING`` stops the run.
"""

from __future__ import annotations

import copy
import logging
import uuid
from datetime import datetime

from sqlalchemy import select

from app.bus.arns import Scope
from app.bus.events import route
from app.bus.models import ArchivedEvent, Event, EventBus, Replay
from app.config import Settings
from app.db import get_database, utcnow

log = logging.getLogger("smokehouse.bus")

BATCH = 200
REPLAY_NAMESPACE = uuid.UUID("5f2c2a55-64a4-4d6b-9d0f-1f0b8b0e7c11")


def replayed_event_id(replay_name: str, event_id: str) -> str:
    return str(uuid.uuid5(REPLAY_NAMESPACE, f"{replay_name}/{event_id}"))


def _rule_names(replay: Replay) -> set[str] | None:
    if not replay.filter_rules:
        return None
    return {arn.rsplit("/", 1)[-1] for arn in replay.filter_rules}


def run_replay(settings: Settings, name: str) -> str:
    """Replay in batches until done or cancelled; return the final state."""
    database = get_database(settings.sqlalchemy_url)
    scope = Scope(settings.region, settings.account_id)
    cursor: tuple[datetime, str] | None = None
    while True:
        with database.session() as session:
            replay = session.get(Replay, name)
            if replay is None or replay.state in ("COMPLETED", "CANCELLED", "FAILED"):
                return replay.state if replay else "MISSING"
            if replay.state == "CANCELLING":
                replay.state, replay.replay_end_time = "CANCELLED", utcnow()
                return replay.state
            replay.state = "RUNNING"
            bus = session.get(EventBus, replay.destination_bus)
            if bus is None:
                replay.state, replay.state_reason = "FAILED", "destination bus no longer exists"
                return replay.state
            statement = (
                select(ArchivedEvent, Event)
                .join(Event, Event.id == ArchivedEvent.event_id)
                .where(
                    ArchivedEvent.archive_name == replay.archive_name,
                    ArchivedEvent.time >= replay.event_start_time,
                    ArchivedEvent.time < replay.event_end_time,
                )
                .order_by(ArchivedEvent.time, ArchivedEvent.event_id)
                .limit(BATCH)
            )
            if cursor is not None:
                statement = statement.where(
                    (ArchivedEvent.time > cursor[0])
                    | ((ArchivedEvent.time == cursor[0]) & (ArchivedEvent.event_id > cursor[1]))
                )
            rows = session.execute(statement).all()
            now = utcnow()
            only = _rule_names(replay)
            for archived, event in rows:
                new_id = replayed_event_id(name, event.id)
                if session.get(Event, new_id) is None:
                    envelope = copy.deepcopy(event.envelope)
                    envelope["id"] = new_id
                    envelope["replay-name"] = name
                    route(
                        session,
                        bus,
                        envelope,
                        now=now,
                        new_id=lambda: str(uuid.uuid4()),
                        only_rules=only,
                        settings=settings,  # the batch's deliveries go out after its commit
                    )
                cursor = (archived.time, archived.event_id)
                replay.last_replayed_time = archived.time
            if len(rows) < BATCH:
                replay.state, replay.replay_end_time = "COMPLETED", utcnow()
        if len(rows) < BATCH:
            log.info("replay %s completed", name, extra={"arn": scope.replay_arn(name)})
            return "COMPLETED"
