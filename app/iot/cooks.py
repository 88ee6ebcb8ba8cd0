"""Cook sessions, FireBoard's way: one opens when data arrives for a device with none open, and
closes after ``SMOKEHOUSE_IOT_COOK_IDLE_SECONDS`` (30 min) without data — checked when data
arrives and by a periodic task — or by hand (GraphQL ``startCook``/``endCook``).

Times are the readings' own timestamps, so a device replaying its offline buffer lands its
readings in the cook they belong to. A cook closed for silence ends at its last reading.
Services: the caller's transaction, no commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.iot.models import Cook, Device


def open_cook(session: Session, device_id: str) -> Cook | None:
    return session.scalar(
        select(Cook)
        .where(Cook.device_id == device_id, Cook.ended_at.is_(None))
        .order_by(Cook.started_at.desc())
        .limit(1)
    )


def open_cooks(session: Session, device_ids: Sequence[str]) -> dict[str, Cook]:
    """Each device's open cook (the newest, should there ever be two), in one query."""
    found: dict[str, Cook] = {}
    rows = session.scalars(
        select(Cook)
        .where(Cook.device_id.in_(list(device_ids)), Cook.ended_at.is_(None))
        .order_by(Cook.started_at)
    )
    for cook in rows:
        found[cook.device_id] = cook
    return found


def _covering(session: Session, device_id: str, ts: datetime) -> int | None:
    """The closed cook a late reading falls in, if any."""
    found: int | None = session.scalar(
        select(Cook.id)
        .where(
            Cook.device_id == device_id,
            Cook.started_at <= ts,
            Cook.ended_at.is_not(None),
            Cook.ended_at >= ts,
        )
        .order_by(Cook.started_at.desc())
        .limit(1)
    )
    return found


def _new(session: Session, device_id: str, at: datetime, by: str, name: str | None = None) -> Cook:
    cook = Cook(device_id=device_id, name=name, started_at=at, last_reading_at=at, started_by=by)
    session.add(cook)
    session.flush()
    return cook


def _close(cook: Cook, at: datetime, by: str) -> None:
    cook.ended_at = at
    cook.ended_by = by


_LOOK_UP = object()


def track(
    session: Session,
    device_id: str,
    stamps: Sequence[datetime],
    idle: timedelta,
    current: object = _LOOK_UP,
) -> list[int | None]:
    """The cook of each reading time (``stamps`` in ascending order), opening and closing cooks
    as the data says. ``current``: the device's open cook if the caller already loaded it."""
    cook = open_cook(session, device_id) if current is _LOOK_UP else current
    assert cook is None or isinstance(cook, Cook)
    result: list[int | None] = []
    for ts in stamps:
        if cook is not None and ts < cook.started_at:
            covering = _covering(session, device_id, ts)
            if covering is None and cook.started_by == "auto" and cook.started_at - ts <= idle:
                # An earlier reading arrived after later ones (deliveries run in any order, in
                # batches on several workers): the cook the data opened began with it.
                cook.started_at = ts
                covering = cook.id
            result.append(covering)
            continue
        if cook is not None and ts - cook.last_reading_at > idle:
            _close(cook, cook.last_reading_at, "auto")
            cook = None
        if cook is None:
            late = _covering(session, device_id, ts)  # e.g. in flight when the cook was ended
            if late is not None:
                result.append(late)
                continue
            cook = _new(session, device_id, ts, "auto")
        elif ts > cook.last_reading_at:
            cook.last_reading_at = ts
        result.append(cook.id)
    return result


def close_idle(session: Session, now: datetime, idle: timedelta) -> int:
    """Close every cook silent for longer than ``idle`` (it ends at its last reading)."""
    result = session.execute(
        update(Cook)
        .where(Cook.ended_at.is_(None), Cook.last_reading_at < now - idle)
        .values(ended_at=Cook.last_reading_at, ended_by="auto")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def start_cook(session: Session, device_id: str, now: datetime, name: str | None = None) -> Cook:
    """Start a cook by hand; the open one, if any, ends now. A name over 200 characters
    (``ValueError``) or an unknown device (``LookupError``) changes nothing."""
    if name is not None and len(name) > 200:
        raise ValueError("name must be at most 200 characters")
    if session.get(Device, device_id) is None:
        raise LookupError(f"no device {device_id}")
    current = open_cook(session, device_id)
    if current is not None:
        _close(current, now, "manual")
    return _new(session, device_id, now, "manual", name)


def end_cook(session: Session, device_id: str, now: datetime) -> Cook | None:
    """End the open cook by hand (None if there is none). The next reading starts a new one."""
    current = open_cook(session, device_id)
    if current is not None:
        _close(current, now, "manual")
        session.flush()
    return current
