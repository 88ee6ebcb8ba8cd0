"""Handlers the ``iot-alarms`` state machine calls (``arn:aws:states:::smokehouse:task:…``).

Each runs in its own transaction, then announces what changed (live message, notification
task) after the commit. The bus delivers at least once: a redelivered batch is judged again and
changes nothing (the evaluator skips readings it has seen).
"""

from __future__ import annotations

from typing import Any

from app.db import get_database, utcnow
from app.handlers import HandlerContext, handler
from app.iot.alarms import service
from app.iot.alarms.settings import alarm_config


def _summary(changes: list[service.AlarmChange]) -> dict[str, int]:
    return {
        "opened": sum(c.action == "open" for c in changes),
        "cleared": sum(c.action == "clear" for c in changes),
    }


@handler("iot.alarms.telemetry")
def telemetry(payload: Any, context: HandlerContext) -> dict[str, int]:
    """``{"messages": [...]}`` of a Telemetry Batch event's detail."""
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        raise ValueError('expected {"messages": [...]} (a Telemetry Batch detail)')
    settings = context.app_settings()
    with get_database(settings.sqlalchemy_url).session() as session:
        changes = service.process_telemetry(
            session, payload["messages"], utcnow(), alarm_config(settings.iot.alarms)
        )
        service.announce_changes(session, settings, changes)
    return _summary(changes)


@handler("iot.alarms.status")
def device_status(payload: Any, context: HandlerContext) -> dict[str, int]:
    """``{"device_id", "status", "received_at"}`` of a Device Status event's detail."""
    if not isinstance(payload, dict) or not {"device_id", "status"} <= payload.keys():
        raise ValueError('expected {"device_id", "status", "received_at"}')
    settings = context.app_settings()
    now = utcnow()
    received_at = service.parse_time(payload.get("received_at") or now.isoformat(), "received_at")
    with get_database(settings.sqlalchemy_url).session() as session:
        changes = service.process_status(
            session,
            str(payload["device_id"]),
            str(payload["status"]),
            received_at,
            now,
            alarm_config(settings.iot.alarms),
        )
        service.announce_changes(session, settings, changes)
    return _summary(changes)
