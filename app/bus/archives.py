"""Archives and replays: EventBridge's CreateArchive ... CancelReplay over our tables.

An archive is a filter on one bus (an optional event pattern); ``app.bus.events.route`` writes an
``archived_events`` row for every event that passes it, in the same transaction as the event.
That filter is part of the bus's compiled matcher, so every change here calls
:func:`app.bus.service.touch` to make other processes rebuild it.

A replay is only a row here, in state ``STARTING``: the caller commits it, then hands its name to
the runner (``app.bus.replay.run_replay``), which moves it through ``RUNNING`` to ``COMPLETED``
and honours ``CANCELLING``. Services take a Session and never commit.

Error codes and messages are EventBridge's where they are known (recorded against AWS by
LocalStack's and moto's test suites); the few that are ours say so in a comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.bus.arns import DEFAULT_BUS, Scope
from app.bus.errors import (
    IllegalStatus,
    ResourceAlreadyExists,
    ResourceNotFound,
    Validation,
)
from app.bus.models import Archive, ArchivedEvent, EventBus, Replay, Rule
from app.bus.service import Page, canonical_pattern, paginate, touch
from app.db import utcnow

ARCHIVE_STATES = ("ENABLED", "DISABLED", "CREATING", "UPDATING", "CREATE_FAILED", "UPDATE_FAILED")
REPLAY_STATES = ("STARTING", "RUNNING", "CANCELLING", "COMPLETED", "CANCELLED", "FAILED")
CANCELLABLE = ("STARTING", "RUNNING")

_ARN = re.compile(
    r"^arn:aws[a-z-]*:events:(?P<region>[a-z0-9-]*):(?P<account>\d{12})?:(?P<res>.+)$"
)


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    """What DescribeArchive/ListArchives report besides the row: EventCount and SizeBytes."""

    event_count: int = 0
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class _Arn:
    """An events ARN taken apart: ``kind`` and ``path`` of ``<kind>/<path>``, and whether it is
    in our account and the caller's region (anything else names something that is not here)."""

    local: bool
    kind: str
    path: str


def _parse_arn(arn: str, scope: Scope, parameter: str) -> _Arn:
    match = _ARN.match(arn or "")
    if match is None:
        # Wording of EventBridge's answer to a malformed ARN parameter (as moto records it).
        raise Validation(
            f"Parameter {parameter} is not valid. Reason: Provided Arn is not in correct format."
        )
    kind, _, path = match["res"].partition("/")
    local = match["account"] == scope.account_id and match["region"] == scope.region
    return _Arn(local, kind, path)


def bus_name_of(arn: str, scope: Scope, parameter: str) -> str:
    """``arn:aws:events:r:a:event-bus/name`` -> ``name``; anything else is a ValidationException.

    Another account's or region's bus cannot exist here: ResourceNotFoundException.
    """
    parsed = _parse_arn(arn, scope, parameter)
    if parsed.kind != "event-bus" or not parsed.path:
        raise Validation(
            f"Parameter {parameter} is not valid. Reason: Must contain an event bus ARN."
        )
    if not parsed.local:
        raise ResourceNotFound(f"Event bus {parsed.path} does not exist.")
    return parsed.path


def _archive_name_of(arn: str, scope: Scope, parameter: str) -> str:
    """``arn:...:archive/name`` -> ``name`` ("" for another account's or region's archive)."""
    parsed = _parse_arn(arn, scope, parameter)
    if parsed.kind != "archive" or not parsed.path:
        raise Validation(
            f"Parameter {parameter} is not valid. Reason: Provided Arn is not in correct format."
        )
    return parsed.path if parsed.local else ""


def _existing_bus(session: Session, name: str) -> EventBus:
    bus = session.get(EventBus, name)
    if bus is None:
        raise ResourceNotFound(f"Event bus {name} does not exist.")
    return bus


# --- archives -----------------------------------------------------------------------------


def create_archive(
    session: Session,
    scope: Scope,
    *,
    name: str,
    event_source_arn: str,
    event_pattern: str | None = None,
    description: str | None = None,
    retention_days: int | None = None,
) -> Archive:
    """A new archive on an existing bus; the pattern is validated like a rule's."""
    if session.get(Archive, name) is not None:
        raise ResourceAlreadyExists(f"Archive {name} already exists.")
    bus = _existing_bus(session, bus_name_of(event_source_arn, scope, "EventSourceArn"))
    pattern = canonical_pattern(event_pattern)
    archive = Archive(
        name=name,
        bus_name=bus.name,
        event_pattern=pattern,
        retention_days=retention_days or 0,
        description=description,
        state="ENABLED",
        created_at=utcnow(),
    )
    session.add(archive)
    try:
        session.flush()
    except IntegrityError:  # a concurrent CreateArchive won the race for the name
        raise ResourceAlreadyExists(f"Archive {name} already exists.") from None
    touch(session, bus.name)
    return archive


def get_archive(session: Session, name: str) -> Archive:
    archive = session.get(Archive, name)
    if archive is None:
        raise ResourceNotFound(f"Archive {name} does not exist.")
    return archive


def archive_stats(session: Session, names: Sequence[str]) -> dict[str, ArchiveStats]:
    """EventCount and SizeBytes per archive, in one grouped query."""
    if not names:
        return {}
    rows = session.execute(
        select(
            ArchivedEvent.archive_name,
            func.count(),
            func.coalesce(func.sum(ArchivedEvent.size), 0),
        )
        .where(ArchivedEvent.archive_name.in_(list(names)))
        .group_by(ArchivedEvent.archive_name)
    ).all()
    stats = {name: ArchiveStats() for name in names}
    for archive_name, count, size in rows:
        stats[archive_name] = ArchiveStats(int(count), int(size))
    return stats


def _one_filter(operation: str, *filters: object) -> None:
    if sum(f is not None for f in filters) > 1:
        raise Validation(
            f"At most one filter is allowed for {operation}. "
            "Use either : State, EventSourceArn, or NamePrefix."
        )


def list_archives(
    session: Session,
    scope: Scope,
    *,
    name_prefix: str | None = None,
    event_source_arn: str | None = None,
    state: str | None = None,
    limit: int | None = None,
    token: str | None = None,
) -> Page:
    _one_filter("ListArchives", name_prefix, event_source_arn, state)
    statement = select(Archive).order_by(Archive.name)
    if name_prefix is not None:
        statement = statement.where(Archive.name.startswith(name_prefix, autoescape=True))
    if event_source_arn is not None:
        bus = _existing_bus(session, bus_name_of(event_source_arn, scope, "EventSourceArn"))
        statement = statement.where(Archive.bus_name == bus.name)
    if state is not None:
        statement = statement.where(Archive.state == state)
    return paginate(statement, session, limit, token)


def update_archive(
    session: Session,
    name: str,
    *,
    description: str | None = None,
    event_pattern: str | None = None,
    retention_days: int | None = None,
) -> Archive:
    """Change what is given; a new pattern applies to events put from now on."""
    archive = get_archive(session, name)
    pattern = canonical_pattern(event_pattern) if event_pattern is not None else None
    if description is not None:
        archive.description = description
    if pattern is not None:
        archive.event_pattern = pattern
    if retention_days is not None:
        archive.retention_days = retention_days
    touch(session, archive.bus_name)
    session.flush()
    return archive


def delete_archive(session: Session, name: str) -> None:
    """Delete the archive and (by cascade) its archived-event index; the events stay."""
    archive = get_archive(session, name)
    bus_name = archive.bus_name
    session.delete(archive)
    session.flush()
    touch(session, bus_name)


# --- replays ------------------------------------------------------------------------------


def start_replay(
    session: Session,
    scope: Scope,
    *,
    name: str,
    event_source_arn: str,
    destination_arn: str,
    filter_arns: Sequence[str] | None,
    start: datetime,
    end: datetime,
    description: str | None = None,
    now: datetime | None = None,
) -> Replay:
    """Validate a StartReplay and add its row in ``STARTING``; the caller commits, then runs it.

    Checks run in the order EventBridge's answers suggest: name taken, time window, archive,
    destination bus, rule filter.
    """
    now = now or utcnow()
    if session.get(Replay, name) is not None:
        raise ResourceAlreadyExists(f"Replay {name} already exists.")
    if end <= start:
        raise Validation(
            "Parameter EventEndTime is not valid. "
            "Reason: EventStartTime must be before EventEndTime."
        )
    if end > now:
        # Ours: EventBridge's wording for a window that ends in the future is not recorded.
        raise Validation(
            "Parameter EventEndTime is not valid. Reason: EventEndTime cannot be in the future."
        )
    archive_name = _archive_name_of(event_source_arn, scope, "EventSourceArn")
    archive = session.get(Archive, archive_name) if archive_name else None
    if archive is None:
        shown = event_source_arn.rsplit("/", 1)[-1]
        raise Validation(
            f"Parameter EventSourceArn is not valid. Reason: Archive {shown} does not exist."
        )
    bus = _existing_bus(session, bus_name_of(destination_arn, scope, "Destination.Arn"))
    if bus.name != archive.bus_name:
        raise Validation(
            "Parameter Destination.Arn is not valid. "
            "Reason: Cross event bus replay is not permitted."
        )
    rules = _filter_rules(session, scope, bus.name, filter_arns)
    replay = Replay(
        name=name,
        archive_name=archive.name,
        destination_bus=bus.name,
        filter_rules=rules,
        event_start_time=start,
        event_end_time=end,
        description=description,
        state="STARTING",
        replay_start_time=now,
    )
    session.add(replay)
    try:
        session.flush()
    except IntegrityError:  # a concurrent StartReplay won the race for the name
        raise ResourceAlreadyExists(f"Replay {name} already exists.") from None
    return replay


def _filter_rules(
    session: Session, scope: Scope, bus_name: str, filter_arns: Sequence[str] | None
) -> list[str] | None:
    """FilterArns must name existing rules of the destination bus; stored as canonical ARNs."""
    if not filter_arns:
        return None
    rules: list[str] = []
    for arn in filter_arns:
        parsed = _parse_arn(arn, scope, "Destination.FilterArns")
        rule_bus, _, rule_name = parsed.path.rpartition("/")
        rule_bus = rule_bus or DEFAULT_BUS
        # Ours: EventBridge's wording for a bad filter ARN is not recorded.
        if not parsed.local or parsed.kind != "rule" or not rule_name or rule_bus != bus_name:
            raise Validation(
                "Parameter Destination.FilterArns is not valid. "
                f"Reason: {arn} is not the ARN of a rule on event bus {bus_name}."
            )
        exists = session.scalar(
            select(Rule.id).where(Rule.bus_name == bus_name, Rule.name == rule_name)
        )
        if exists is None:
            raise Validation(
                "Parameter Destination.FilterArns is not valid. "
                f"Reason: Rule {rule_name} does not exist on EventBus {bus_name}."
            )
        rules.append(scope.rule_arn(bus_name, rule_name))
    return list(dict.fromkeys(rules))


def get_replay(session: Session, name: str) -> Replay:
    replay = session.get(Replay, name)
    if replay is None:
        raise ResourceNotFound(f"Replay {name} does not exist.")
    return replay


def list_replays(
    session: Session,
    scope: Scope,
    *,
    name_prefix: str | None = None,
    event_source_arn: str | None = None,
    state: str | None = None,
    limit: int | None = None,
    token: str | None = None,
) -> Page:
    _one_filter("ListReplays", name_prefix, event_source_arn, state)
    statement = select(Replay).order_by(Replay.name)
    if name_prefix is not None:
        statement = statement.where(Replay.name.startswith(name_prefix, autoescape=True))
    if event_source_arn is not None:
        archive_name = _archive_name_of(event_source_arn, scope, "EventSourceArn")
        statement = statement.where(Replay.archive_name == archive_name)
    if state is not None:
        statement = statement.where(Replay.state == state)
    return paginate(statement, session, limit, token)


def cancel_replay(session: Session, name: str) -> Replay:
    """Ask the runner to stop: ``CANCELLING`` now, ``CANCELLED`` once the runner sees it."""
    replay = get_replay(session, name)
    if replay.state not in CANCELLABLE:
        raise IllegalStatus(f"Replay {name} is not in a valid state for this operation.")
    replay.state = "CANCELLING"
    session.flush()
    return replay


def fail_replay(session: Session, name: str, reason: str) -> None:
    """Mark a replay that could not be handed to its runner (it would stay STARTING forever)."""
    replay = session.get(Replay, name)
    if replay is not None and replay.state == "STARTING":
        replay.state = "FAILED"
        replay.state_reason = reason[:512]
        replay.replay_end_time = utcnow()


def purge_expired(session: Session, now: datetime) -> int:
    """Drop archived copies older than their archive's RetentionDays (0 keeps them forever)."""
    purged = 0
    for archive in session.scalars(select(Archive).where(Archive.retention_days > 0)):
        cutoff = now - timedelta(days=archive.retention_days)
        result = session.execute(
            delete(ArchivedEvent).where(
                ArchivedEvent.archive_name == archive.name, ArchivedEvent.time < cutoff
            )
        )
        purged += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return purged
