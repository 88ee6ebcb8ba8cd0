"""PutEvents: validate entries, match every enabled rule at once, persist events and deliveries.

Events, archive copies and one delivery row per matched target are written in the caller's
transaction. Given ``settings``, the deliveries are registered on the session's unit of work
(:func:`app.bus.outbox.deliver_after_commit`): enqueued once the caller's transaction commits,
never if it rolls back. ``PutResult.delivery_ids`` still says which deliveries were created.

Each process keeps one compiled matcher per bus and rebuilds it when the bus's ``revision`` moved,
so matching cost does not grow with the number of rules and a rule change is seen at once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.bus.arns import Scope, bus_name_from
from app.bus.envelope import MAX_ENTRIES, MAX_REQUEST_BYTES, EntryError, build_envelope, entry_size
from app.bus.errors import Validation
from app.bus.models import Archive, ArchivedEvent, Delivery, Event, EventBus, Rule
from app.bus.outbox import deliver_after_commit
from app.bus.patterns import Pattern, RuleMatcher, matches, parse_pattern
from app.config import Settings
from app.db import insert_together, utcnow


@dataclass(frozen=True, slots=True)
class RouteTarget:
    target_id: str
    arn: str
    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RouteRule:
    id: str
    name: str
    targets: tuple[RouteTarget, ...]


@dataclass(frozen=True, slots=True)
class ArchiveFilter:
    name: str
    pattern: Pattern | None


@dataclass(frozen=True, slots=True)
class CompiledBus:
    revision: int
    created_at: datetime  # a bus deleted and created again starts its revisions over
    matcher: RuleMatcher[str]
    rules: dict[str, RouteRule]
    archives: tuple[ArchiveFilter, ...]


_cache: dict[tuple[str, str], CompiledBus] = {}
_cache_lock = threading.Lock()


class BusRef(Protocol):
    """What routing needs of a bus: an ``EventBus`` row or a :class:`BusHead`."""

    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...


class BusHead(NamedTuple):
    name: str
    revision: int
    created_at: datetime


_BUS_HEAD = select(EventBus.name, EventBus.revision, EventBus.created_at).where(
    EventBus.name == bindparam("name")
)


def bus_head(session: Session, name: str) -> BusHead | None:
    """A bus's name, revision and creation time, without loading the ORM row (PutEvents reads
    it on every call)."""
    row = session.execute(_BUS_HEAD, {"name": name}).first()
    return None if row is None else BusHead(*row)


def compiled_bus(session: Session, bus: BusRef) -> CompiledBus:
    """The bus's compiled rules, rebuilt only when its revision changed."""
    key = (str(session.get_bind().engine.url), bus.name)
    cached = _cache.get(key)
    if (
        cached is not None
        and cached.revision == bus.revision
        and cached.created_at == bus.created_at
    ):
        return cached
    with _cache_lock:
        rules = session.scalars(
            select(Rule).where(Rule.bus_name == bus.name, Rule.state == "ENABLED")
        ).all()
        patterns: dict[str, Pattern] = {}
        routes: dict[str, RouteRule] = {}
        for rule in rules:
            if rule.event_pattern is None:
                continue
            patterns[rule.id] = parse_pattern(rule.event_pattern)
            routes[rule.id] = RouteRule(
                rule.id,
                rule.name,
                tuple(RouteTarget(t.target_id, t.arn, dict(t.spec)) for t in rule.targets),
            )
        archives = tuple(
            ArchiveFilter(a.name, parse_pattern(a.event_pattern) if a.event_pattern else None)
            for a in session.scalars(
                select(Archive).where(Archive.bus_name == bus.name, Archive.state == "ENABLED")
            )
        )
        compiled = CompiledBus(
            bus.revision, bus.created_at, RuleMatcher.build(patterns), routes, archives
        )
        _cache[key] = compiled
        return compiled


@dataclass
class PutResult:
    entries: list[dict[str, Any]] = field(default_factory=list)
    delivery_ids: list[str] = field(default_factory=list)

    @property
    def failed_count(self) -> int:
        return sum(1 for e in self.entries if "ErrorCode" in e)

    def response(self) -> dict[str, Any]:
        return {"FailedEntryCount": self.failed_count, "Entries": self.entries}


def check_request(entries: Sequence[Mapping[str, Any]]) -> None:
    """Request-level limits: 1 to 10 entries, 256 KB in total (ValidationException)."""
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise Validation(
            f"1 validation error detected: Value at 'entries' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_ENTRIES}"
            if entries
            else "1 validation error detected: Value at 'entries' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    if sum(entry_size(e) for e in entries) > MAX_REQUEST_BYTES:
        raise Validation("Total size of the entries in the request is over the limit.")


def put_events(
    session: Session,
    entries: Sequence[Mapping[str, Any]],
    scope: Scope,
    *,
    now: datetime | None = None,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    replay_name: str | None = None,
    only_rules: set[str] | None = None,
    settings: Settings | None = None,
) -> PutResult:
    """Persist and route ``entries``; per-entry errors leave the other entries unaffected. With
    ``settings`` the deliveries are enqueued after the session commits."""
    check_request(entries)
    now = now or utcnow()
    result = PutResult()
    routed: list[Routed] = []
    buses: dict[str, BusHead | None] = {}
    for entry in entries:
        bus_name = bus_name_from(entry.get("EventBusName"))
        if bus_name not in buses:
            buses[bus_name] = bus_head(session, bus_name)
        bus = buses[bus_name]
        if bus is None:
            result.entries.append(
                {
                    "ErrorCode": "ResourceNotFoundException",
                    "ErrorMessage": f"Event bus {bus_name} does not exist.",
                }
            )
            continue
        envelope = build_envelope(
            entry, event_id=new_id, now=now, account=scope.account_id, region=scope.region
        )
        if isinstance(envelope, EntryError):
            result.entries.append({"ErrorCode": envelope.code, "ErrorMessage": envelope.message})
            continue
        if replay_name is not None:
            envelope["replay-name"] = replay_name
        routed.append(plan(session, bus, envelope, now=now, new_id=new_id, only_rules=only_rules))
        result.entries.append({"EventId": envelope["id"]})
    store(session, routed)
    for item in routed:
        result.delivery_ids.extend(item.delivery_ids)
    if settings is not None:
        deliver_after_commit(session, settings, result.delivery_ids)
    return result


def route(
    session: Session,
    bus: BusRef,
    envelope: dict[str, Any],
    *,
    now: datetime,
    new_id: Callable[[], str],
    only_rules: set[str] | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """Store one envelope, its archive copies and a delivery per matched target (enqueued after
    the session commits when ``settings`` is given)."""
    routed = plan(session, bus, envelope, now=now, new_id=new_id, only_rules=only_rules)
    store(session, [routed])
    if settings is not None:
        deliver_after_commit(session, settings, routed.delivery_ids)
    return routed.delivery_ids


@dataclass
class Routed:
    """One event's rows, built before any is written: the event, its archive copies, its
    deliveries (plain column values: :func:`store` inserts them in multi-row statements)."""

    event: dict[str, Any]
    deliveries: list[dict[str, Any]]
    archived: list[dict[str, Any]] = field(default_factory=list)

    @property
    def delivery_ids(self) -> list[str]:
        return [d["id"] for d in self.deliveries]


def event_row(
    bus_name: str, envelope: dict[str, Any], time: datetime, now: datetime, matched_rules: int
) -> dict[str, Any]:
    return {
        "id": envelope["id"],
        "bus_name": bus_name,
        "source": envelope["source"],
        "detail_type": envelope["detail-type"],
        "time": time,
        "received_at": now,
        "envelope": envelope,
        "replay_name": envelope.get("replay-name"),
        "matched_rules": matched_rules,
    }


def delivery_row(
    delivery_id: str,
    event_id: str,
    bus_name: str,
    rule: tuple[str, str],
    target: tuple[str, str, dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """A pending delivery of ``event_id`` to ``target`` (id, ARN, spec) of ``rule`` (id, name),
    marked enqueued: it goes to the broker right after the commit."""
    (rule_id, rule_name), (target_id, arn, spec) = rule, target
    return {
        "id": delivery_id,
        "event_id": event_id,
        "bus_name": bus_name,
        "rule_id": rule_id,
        "rule_name": rule_name,
        "target_id": target_id,
        "target_arn": arn,
        "target_spec": spec,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "enqueued_at": now,
    }


def store(session: Session, routed: Sequence[Routed]) -> None:
    """Insert the events and what references them, in one statement on PostgreSQL (one
    multi-row INSERT per table elsewhere), never a statement (or ORM object) per row."""
    if not routed:
        return
    insert_together(
        session,
        [
            (Event, [r.event for r in routed]),
            (ArchivedEvent, [row for r in routed for row in r.archived]),
            (Delivery, [row for r in routed for row in r.deliveries]),
        ],
    )


def plan(
    session: Session,
    bus: BusRef,
    envelope: dict[str, Any],
    *,
    now: datetime,
    new_id: Callable[[], str],
    only_rules: set[str] | None = None,
) -> Routed:
    """Match one envelope and build (without writing) its event, archive and delivery rows."""
    compiled = compiled_bus(session, bus)
    matched = [compiled.rules[rule_id] for rule_id in compiled.matcher.match(envelope)]
    if only_rules is not None:
        matched = [rule for rule in matched if rule.name in only_rules]
    event_time = datetime.fromisoformat(envelope["time"].replace("Z", "+00:00"))
    routed = Routed(event_row(bus.name, envelope, event_time, now, len(matched)), [])
    if compiled.archives and "replay-name" not in envelope:  # replays are never archived again
        size = len(json.dumps(envelope))
        routed.archived = [
            {"archive_name": a.name, "event_id": envelope["id"], "time": event_time, "size": size}
            for a in compiled.archives
            if a.pattern is None or matches(a.pattern, envelope)
        ]
    routed.deliveries = [
        delivery_row(
            new_id(),
            envelope["id"],
            bus.name,
            (rule.id, rule.name),
            (target.target_id, target.arn, target.spec),
            now,
        )
        for rule in matched
        for target in rule.targets
    ]
    return routed
