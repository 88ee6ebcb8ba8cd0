"""Handlers the thermometer's workflows call (``arn:aws:states:::smokehouse:task:iot.*``).

Handlers read their settings from the context the caller gives them.
"""

from __future__ import annotations

import logging
from typing import Any

from app import realtime
from app.config import Settings
from app.db import after_commit, get_database
from app.handlers import HandlerContext, handler
from app.iot import discovery
from app.iot.enrich import StoreResult, parse_messages, store_batch
from app.iot.settings import IotSettings

log = logging.getLogger("smokehouse.iot.enrich")


def enrich_and_store(settings: Settings, iot: IotSettings, payload: Any) -> StoreResult:
    """Store one batch (its own transaction), then publish the live updates (readings, and a
    device's first or new probes) and announce new probes — after the commit, so a subscriber
    never sees a reading or a probe that is not stored."""
    messages, skipped = parse_messages(payload)
    with get_database(settings.sqlalchemy_url).session() as session:
        result = store_batch(session, iot, messages)
        live = [(f"readings:{m['device_id']}", m) for m in result.live]
        live += result.device_changes()
        after_commit(session).call(realtime.publish_many, settings, live)
    result.skipped += skipped
    if result.new_probes:
        with get_database(settings.sqlalchemy_url).session() as session:
            for device_id, probe_ids in result.new_probes.items():
                try:
                    discovery.announce(settings, session, device_id, probe_ids)
                except Exception:  # the contract says it never raises; a bug must not lose data
                    log.exception("Home Assistant discovery failed for %s", device_id)
    return result


@handler("iot.enrich_and_store")
def enrich_and_store_handler(payload: Any, context: HandlerContext) -> Any:
    settings = context.app_settings()
    result = enrich_and_store(settings, settings.iot, payload)
    return {"messages": result.messages, "rows": result.rows, "skipped": result.skipped}
