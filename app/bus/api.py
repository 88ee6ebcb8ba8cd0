"""EventBridge's API on ``POST /`` (``X-Amz-Target: AWSEvents.<Op>``), so boto3's ``events`` client,
the AWS CLI and Terraform can manage smokehouse's buses, rules, targets, archives, replays,
connections and API destinations, and put events.

Each handler is a thin adapter: check the request the way AWS's request framework does (types,
then required members, lengths, patterns and enums, reported together as ``N validation errors
detected: ...``), open one DB session, call the domain service (``app.bus.service``,
``app.bus.events``, ``app.bus.archives``, ``app.bus.connections``), commit, and shape the answer
exactly as botocore's service model describes it. Timestamps are ``datetime`` values; the protocol
layer sends them as epoch seconds and boto3 turns them back into datetimes.

Two calls leave the process after the commit, never before it (a task must not refer to a row
that is not committed yet):

* PutEvents hands the new delivery ids to ``enqueue``; if that fails the rows are still there and
  the outbox sweeper sends them later, so the request still succeeds.
* StartReplay hands the replay's name to ``start_replay``; if that fails the replay is marked
  ``FAILED`` with the reason, instead of sitting in ``STARTING`` forever.

Both callables (and the Settings naming the database) are given once at startup::

    from app.bus import api as bus_api
    bus_api.configure(settings, enqueue=..., start_replay=...)

ARNs use the caller's signing region and smokehouse's account id. Buses, rules and the rest are
not partitioned by region: a client signing for another region sees the same resources.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.aws.errors import serialization
from app.aws.operations import AwsCall, registry
from app.bus import archives, connections, service
from app.bus.arns import Scope
from app.bus.errors import InvalidEventPatternError, Validation
from app.bus.events import put_events
from app.bus.models import ApiDestination, Archive, Connection, EventBus, Replay, Rule
from app.bus.patterns import InvalidEventPattern, test_event_pattern
from app.config import Settings
from app.db import get_database

log = logging.getLogger("smokehouse.bus")

Enqueue = Callable[[list[str]], object]
StartReplay = Callable[[str], object]
T = TypeVar("T")


# --- wiring -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Wiring:
    settings: Settings
    enqueue: Enqueue
    start_replay: StartReplay


_wiring: _Wiring | None = None


def configure(settings: Settings, *, enqueue: Enqueue, start_replay: StartReplay) -> None:
    """Tell the handlers which database to use and how to hand work on after a commit.

    The operation registry is process-wide, so this is too: ``create_app`` calls it once.
    ``enqueue(delivery_ids)`` sends delivery tasks; ``start_replay(name)`` starts the runner of
    a committed replay (``app.bus.replay.run_replay``), typically by sending a task. Neither is
    called inside a transaction.
    """
    global _wiring
    _wiring = _Wiring(settings, enqueue, start_replay)


def _wired() -> _Wiring:
    if _wiring is None:
        raise RuntimeError("app.bus.api.configure(...) was not called at startup")
    return _wiring


@contextmanager
def _session() -> Iterator[Session]:
    """One unit of work per call: commit on success, roll back on any error."""
    with get_database(_wired().settings.sqlalchemy_url).session() as session:
        yield session


def _scope(call: AwsCall) -> Scope:
    return Scope(region=call.region, account_id=call.account_id)


def _enqueue(delivery_ids: Sequence[str]) -> None:
    if not delivery_ids:
        return
    try:
        _wired().enqueue(list(delivery_ids))
    except Exception:  # committed rows wait in the outbox; the sweeper will send them
        log.exception(
            "enqueueing %d deliveries failed; the outbox sweeper will retry", len(delivery_ids)
        )


# --- request checking ---------------------------------------------------------------------

NAME = r"[\.\-_A-Za-z0-9]+"
BUS_NAME = r"[/\.\-_A-Za-z0-9]+"
BUS_NAME_OR_ARN = (
    r"(arn:aws[\w-]*:events:[a-z]+-[a-z]+-[\w-]+:[0-9]{12}:event-bus\/)?[/\.\-_A-Za-z0-9]+"
)
EVENTS_ARN = r"^arn:aws([a-z]|\-)*:events:([a-z]|\d|\-)*:([0-9]{12})?:.+\/.+$"
CONNECTION_ARN = (
    r"^arn:aws([a-z]|\-)*:events:([a-z]|\d|\-)*:([0-9]{12})?:"
    r"connection\/[\.\-_A-Za-z0-9]+\/[\-A-Za-z0-9]+$"
)
HTTPS_ENDPOINT = r"^((%[0-9A-Fa-f]{2}|[-()_.!~*';/?:@\x26=+$,A-Za-z0-9])+)([).!';/?:,])?$"
PARTNER_SOURCE = r"aws\.partner(/[\.\-_A-Za-z0-9]+){2,}"
RULE_STATES = ("ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
#: TestEventPattern's Event must carry these (``resources`` is documented as required too, but
#: EventBridge accepts events without it: LocalStack records that against AWS).
EVENT_FIELDS = ("id", "account", "source", "time", "region", "detail-type")


def _member_path(name: str) -> str:
    """AWS reports members in lowerCamelCase: ``EventBusName`` -> ``eventBusName``."""
    return name[:1].lower() + name[1:]


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Params:
    """A request's members, read the way AWS's request framework reads them.

    A member of the wrong JSON type is a ``SerializationException`` at once; constraint
    violations (null required member, length, pattern, enum, range) are collected and reported
    together by :meth:`done` as one ``ValidationException``, in AWS's wording::

        2 validation errors detected: Value 'x y' at 'name' failed to satisfy constraint: Member
        must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; Value 'GOT' at ...
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._problems: list[str] = []

    def _get(self, name: str, required: bool, path: str | None) -> Any:
        value = self._raw.get(name)
        if value is None and required:
            self._problems.append(
                f"Value null at '{path or _member_path(name)}' failed to satisfy constraint: "
                "Member must not be null"
            )
        return value

    def _violation(self, value: Any, path: str, constraint: str) -> None:
        self._problems.append(
            f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: "
            f"Member must {constraint}"
        )

    def _typed(self, name: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise serialization(f"Value at '{_member_path(name)}' must be {what}.")

    def _length(self, value: Sized, path: str, low: int | None, high: int | None) -> None:
        if low is not None and len(value) < low:
            self._violation(value, path, f"have length greater than or equal to {low}")
        if high is not None and len(value) > high:
            self._violation(value, path, f"have length less than or equal to {high}")

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
        pattern: str | None = None,
        enum: Sequence[str] | None = None,
        path: str | None = None,
    ) -> str | None:
        value = self._get(name, required, path)
        if value is None:
            return None
        self._typed(name, value, str, "a string")
        where = path or _member_path(name)
        self._length(value, where, min_len, max_len)
        if pattern is not None and not re.fullmatch(pattern, value, re.ASCII):
            self._violation(value, where, f"satisfy regular expression pattern: {pattern}")
        if enum is not None and value not in enum:
            self._violation(value, where, f"satisfy enum value set: [{', '.join(enum)}]")
        return str(value)

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._get(name, required, None)
        if value is None:
            return None
        self._typed(name, value, int, "an integer")
        where = _member_path(name)
        if minimum is not None and value < minimum:
            self._violation(value, where, f"have value greater than or equal to {minimum}")
        if maximum is not None and value > maximum:
            self._violation(value, where, f"have value less than or equal to {maximum}")
        return int(value)

    def boolean(self, name: str) -> bool:
        value = self._get(name, False, None)
        if value is None:
            return False
        self._typed(name, value, bool, "a boolean")
        return bool(value)

    def timestamp(self, name: str, *, required: bool = False) -> datetime | None:
        """botocore sends timestamps as epoch seconds; ISO 8601 text is accepted too."""
        value = self._get(name, required, None)
        if value is None:
            return None
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
            if isinstance(value, str):
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except (ValueError, OverflowError, OSError):
            pass
        raise serialization(f"Value at '{_member_path(name)}' must be a timestamp.")

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self._get(name, required, None)
        if value is None:
            return None
        self._typed(name, value, dict, "an object")
        return dict(value)

    def strings(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
    ) -> list[str] | None:
        value = self._get(name, required, None)
        if value is None:
            return None
        self._typed(name, value, list, "a list")
        if not all(isinstance(item, str) for item in value):
            raise serialization(f"Members of '{_member_path(name)}' must be strings.")
        self._length(value, _member_path(name), min_len, max_len)
        return list(value)

    def objects(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
    ) -> list[dict[str, Any]] | None:
        value = self._get(name, required, None)
        if value is None:
            return None
        self._typed(name, value, list, "a list")
        if not all(isinstance(item, dict) for item in value):
            raise serialization(f"Members of '{_member_path(name)}' must be objects.")
        self._length(value, _member_path(name), min_len, max_len)
        return [dict(item) for item in value]

    def done(self) -> None:
        """Raise the collected violations, if any, as AWS does: all of them in one message."""
        if not self._problems:
            return
        count = len(self._problems)
        noun = "error" if count == 1 else "errors"
        raise Validation(f"{count} validation {noun} detected: " + "; ".join(self._problems))


def _present(value: T | None) -> T:
    """A required member after ``done()`` passed (so it cannot be missing)."""
    if value is None:  # pragma: no cover - done() reported it already
        raise RuntimeError("required member missing after validation")
    return value


def _name(p: _Params, member: str = "Name", *, max_len: int = 64) -> str:
    value = p.string(member, required=True, min_len=1, max_len=max_len, pattern=NAME)
    return value or ""


def _bus(p: _Params, member: str = "EventBusName") -> str | None:
    return p.string(member, min_len=1, max_len=1600, pattern=BUS_NAME_OR_ARN)


def _paging(p: _Params) -> tuple[int | None, str | None]:
    limit = p.integer("Limit", minimum=1, maximum=100)
    token = p.string("NextToken", min_len=1, max_len=2048)
    return limit, token


def _page(page: service.Page, key: str, render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {key: [render(item) for item in page.items]}
    if page.next_token is not None:
        answer["NextToken"] = page.next_token
    return answer


def _slice(items: Sequence[T], limit: int | None, token: str | None) -> tuple[list[T], str | None]:
    """Offset paging over a list that is already in memory (a rule's targets)."""
    size = limit or 100
    try:
        start = int(token) if token else 0
    except ValueError:
        raise Validation("The NextToken is not valid.") from None
    end = start + size
    return list(items[start:end]), (str(end) if end < len(items) else None)


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    """Leave out members that have no value, as AWS does (boto3 then omits the key)."""
    return {key: value for key, value in data.items() if value is not None}


# --- events and patterns ------------------------------------------------------------------


@registry.operation("AWSEvents", "PutEvents", write=True)
def put_events_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Store, archive and route up to 10 entries; each bad entry gets its own error.

    Commit, then enqueue: the delivery rows exist before any worker can be told about them.
    """
    p = _Params(params)
    entries = p.objects("Entries", required=True) or []
    p.string("EndpointId", min_len=1, max_len=50)
    p.done()
    for entry in entries:
        if entry.get("EventBusName") is not None and not isinstance(entry["EventBusName"], str):
            raise serialization("Value at 'entries.member.eventBusName' must be a string.")
    with _session() as session:
        result = put_events(session, entries, _scope(call))
    _enqueue(result.delivery_ids)
    return result.response()


@registry.operation("AWSEvents", "TestEventPattern", write=False)
def test_event_pattern_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Whether ``Event`` matches ``EventPattern``, with EventBridge's pattern semantics."""
    p = _Params(params)
    pattern = p.string("EventPattern", required=True, max_len=4096) or ""
    text = p.string("Event", required=True) or ""
    p.done()
    try:
        event = json.loads(text)
    except ValueError:
        raise Validation("Parameter Event is not valid.") from None
    if not isinstance(event, dict) or any(field not in event for field in EVENT_FIELDS):
        raise Validation("Parameter Event is not valid.")
    try:
        return {"Result": test_event_pattern(pattern, event)}
    except InvalidEventPattern as exc:
        raise InvalidEventPatternError(exc.message) from None


# --- rules --------------------------------------------------------------------------------


def _rule(scope: Scope, rule: Rule, *, describe: bool = False) -> dict[str, Any]:
    return _clean(
        {
            "Name": rule.name,
            "Arn": service.rule_arn(scope, rule),
            "EventPattern": rule.event_pattern,
            "ScheduleExpression": rule.schedule_expression,
            "State": rule.state,
            "Description": rule.description,
            "RoleArn": rule.role_arn,
            "ManagedBy": rule.managed_by,
            "EventBusName": rule.bus_name,
            "CreatedBy": scope.account_id if describe else None,
        }
    )


@registry.operation("AWSEvents", "PutRule", write=True)
def put_rule_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Create or update a rule; a bad pattern is refused and nothing is stored."""
    p = _Params(params)
    name = _name(p)
    schedule = p.string("ScheduleExpression", max_len=256)
    pattern = p.string("EventPattern", max_len=4096)
    state = p.string("State", enum=RULE_STATES)
    description = p.string("Description", max_len=512)
    role_arn = p.string("RoleArn", min_len=1, max_len=1600)
    p.objects("Tags")  # accepted; smokehouse does not keep tags
    bus = _bus(p)
    p.done()
    with _session() as session:
        rule = service.put_rule(
            session,
            name=name,
            bus_name=bus,
            event_pattern=pattern,
            schedule_expression=schedule,
            state=state,
            description=description,
            role_arn=role_arn,
        )
        return {"RuleArn": service.rule_arn(_scope(call), rule)}


@registry.operation("AWSEvents", "DescribeRule", write=False)
def describe_rule_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p)
    bus = _bus(p)
    p.done()
    with _session() as session:
        return _rule(_scope(call), service.get_rule(session, bus, name), describe=True)


@registry.operation("AWSEvents", "ListRules", write=False)
def list_rules_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    prefix = p.string("NamePrefix", min_len=1, max_len=64, pattern=NAME)
    bus = _bus(p)
    limit, token = _paging(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        page = service.list_rules(session, bus, prefix, limit, token)
        return _page(page, "Rules", lambda rule: _rule(scope, rule))


@registry.operation("AWSEvents", "DeleteRule", write=True)
def delete_rule_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Deleting a rule that does not exist succeeds, as on AWS; one with targets needs Force."""
    p = _Params(params)
    name = _name(p)
    bus = _bus(p)
    force = p.boolean("Force")
    p.done()
    with _session() as session:
        service.delete_rule(session, bus, name, force=force)
    return {}


def _set_state(params: dict[str, Any], state: str) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p)
    bus = _bus(p)
    p.done()
    with _session() as session:
        service.set_rule_state(session, bus, name, state)
    return {}


@registry.operation("AWSEvents", "EnableRule", write=True)
def enable_rule_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return _set_state(params, "ENABLED")


@registry.operation("AWSEvents", "DisableRule", write=True)
def disable_rule_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return _set_state(params, "DISABLED")


# --- targets ------------------------------------------------------------------------------


def _failed(entries: Sequence[service.FailedTarget]) -> dict[str, Any]:
    return {
        "FailedEntryCount": len(entries),
        "FailedEntries": [
            {"TargetId": f.target_id, "ErrorCode": f.code, "ErrorMessage": f.message}
            for f in entries
        ],
    }


@registry.operation("AWSEvents", "PutTargets", write=True)
def put_targets_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Add or replace targets by Id; a bad target is a failed entry, the good ones apply."""
    p = _Params(params)
    rule = _name(p, "Rule")
    bus = _bus(p)
    targets = p.objects("Targets", required=True, min_len=1, max_len=100) or []
    p.done()
    with _session() as session:
        failed = service.put_targets(session, bus, rule, targets)
    return _failed(failed)


@registry.operation("AWSEvents", "ListTargetsByRule", write=False)
def list_targets_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    rule_name = _name(p, "Rule")
    bus = _bus(p)
    limit, token = _paging(p)
    p.done()
    with _session() as session:
        rule = service.get_rule(session, bus, rule_name)
        items, next_token = _slice(rule.targets, limit, token)
        answer: dict[str, Any] = {"Targets": [dict(target.spec) for target in items]}
    if next_token is not None:
        answer["NextToken"] = next_token
    return answer


@registry.operation("AWSEvents", "RemoveTargets", write=True)
def remove_targets_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    rule = _name(p, "Rule")
    bus = _bus(p)
    ids = p.strings("Ids", required=True, min_len=1, max_len=100) or []
    p.boolean("Force")
    p.done()
    with _session() as session:
        failed = service.remove_targets(session, bus, rule, ids)
    return _failed(failed)


# --- event buses --------------------------------------------------------------------------


def _event_bus(scope: Scope, bus: EventBus) -> dict[str, Any]:
    return _clean(
        {
            "Name": bus.name,
            "Arn": scope.bus_arn(bus.name),
            "Description": bus.description,
            "CreationTime": bus.created_at,
            "LastModifiedTime": bus.created_at,
        }
    )


@registry.operation("AWSEvents", "CreateEventBus", write=True)
def create_event_bus_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = p.string("Name", required=True, min_len=1, max_len=256, pattern=BUS_NAME) or ""
    source = p.string("EventSourceName", min_len=1, max_len=256, pattern=PARTNER_SOURCE)
    description = p.string("Description", max_len=512)
    p.string("KmsKeyIdentifier", max_len=2048)
    p.mapping("DeadLetterConfig")
    p.mapping("LogConfig")
    p.objects("Tags")
    p.done()
    if source is not None:
        raise Validation("Partner event sources (EventSourceName) are not supported by smokehouse.")
    with _session() as session:
        bus = service.create_bus(session, name, description)
        return _clean({"EventBusArn": _scope(call).bus_arn(bus.name), "Description": description})


@registry.operation("AWSEvents", "DescribeEventBus", write=False)
def describe_event_bus_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """``Name`` may be a name or an ARN; without it, the default bus."""
    p = _Params(params)
    name = _bus(p, "Name")
    p.done()
    with _session() as session:
        return _event_bus(_scope(call), service.get_bus(session, name))


@registry.operation("AWSEvents", "ListEventBuses", write=False)
def list_event_buses_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    prefix = p.string("NamePrefix", min_len=1, max_len=256, pattern=BUS_NAME)
    limit, token = _paging(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        page = service.list_buses(session, prefix, limit, token)
        return _page(page, "EventBuses", lambda bus: _event_bus(scope, bus))


@registry.operation("AWSEvents", "DeleteEventBus", write=True)
def delete_event_bus_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Deletes the bus with its rules, targets and archives; a missing bus is not an error."""
    p = _Params(params)
    name = p.string("Name", required=True, min_len=1, max_len=256, pattern=BUS_NAME) or ""
    p.done()
    with _session() as session:
        service.delete_bus(session, name)
    return {}


# --- archives -----------------------------------------------------------------------------


def _archive_summary(
    scope: Scope, archive: Archive, stats: archives.ArchiveStats
) -> dict[str, Any]:
    return {
        "ArchiveName": archive.name,
        "EventSourceArn": scope.bus_arn(archive.bus_name),
        "State": archive.state,
        "RetentionDays": archive.retention_days,
        "SizeBytes": stats.size_bytes,
        "EventCount": stats.event_count,
        "CreationTime": archive.created_at,
    }


@registry.operation("AWSEvents", "CreateArchive", write=True)
def create_archive_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Archive the events of a bus (those matching ``EventPattern``, or all) from now on."""
    p = _Params(params)
    name = _name(p, "ArchiveName", max_len=48)
    source = p.string("EventSourceArn", required=True, min_len=1, max_len=1600, pattern=EVENTS_ARN)
    description = p.string("Description", max_len=512)
    pattern = p.string("EventPattern", max_len=4096)
    retention = p.integer("RetentionDays", minimum=0)
    p.string("KmsKeyIdentifier", max_len=2048)
    p.done()
    scope = _scope(call)
    with _session() as session:
        archive = archives.create_archive(
            session,
            scope,
            name=name,
            event_source_arn=source or "",
            event_pattern=pattern,
            description=description,
            retention_days=retention,
        )
        return _archive_state(scope, archive)


def _archive_state(scope: Scope, archive: Archive) -> dict[str, Any]:
    """CreateArchive's and UpdateArchive's shared answer."""
    return {
        "ArchiveArn": scope.archive_arn(archive.name),
        "State": archive.state,
        "CreationTime": archive.created_at,
    }


@registry.operation("AWSEvents", "DescribeArchive", write=False)
def describe_archive_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p, "ArchiveName", max_len=48)
    p.done()
    scope = _scope(call)
    with _session() as session:
        archive = archives.get_archive(session, name)
        stats = archives.archive_stats(session, [archive.name])[archive.name]
        return _clean(
            {
                "ArchiveArn": scope.archive_arn(archive.name),
                **_archive_summary(scope, archive, stats),
                "Description": archive.description,
                "EventPattern": archive.event_pattern,
            }
        )


@registry.operation("AWSEvents", "ListArchives", write=False)
def list_archives_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    prefix = p.string("NamePrefix", min_len=1, max_len=48, pattern=NAME)
    source = p.string("EventSourceArn", min_len=1, max_len=1600, pattern=EVENTS_ARN)
    state = p.string("State", enum=archives.ARCHIVE_STATES)
    limit, token = _paging(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        page = archives.list_archives(
            session,
            scope,
            name_prefix=prefix,
            event_source_arn=source,
            state=state,
            limit=limit,
            token=token,
        )
        stats = archives.archive_stats(session, [a.name for a in page.items])
        return _page(page, "Archives", lambda a: _archive_summary(scope, a, stats[a.name]))


@registry.operation("AWSEvents", "UpdateArchive", write=True)
def update_archive_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p, "ArchiveName", max_len=48)
    description = p.string("Description", max_len=512)
    pattern = p.string("EventPattern", max_len=4096)
    retention = p.integer("RetentionDays", minimum=0)
    p.string("KmsKeyIdentifier", max_len=2048)
    p.done()
    scope = _scope(call)
    with _session() as session:
        archive = archives.update_archive(
            session,
            name,
            description=description,
            event_pattern=pattern,
            retention_days=retention,
        )
        return _archive_state(scope, archive)


@registry.operation("AWSEvents", "DeleteArchive", write=True)
def delete_archive_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p, "ArchiveName", max_len=48)
    p.done()
    with _session() as session:
        archives.delete_archive(session, name)
    return {}


# --- replays ------------------------------------------------------------------------------


def _replay_summary(scope: Scope, replay: Replay) -> dict[str, Any]:
    return {
        "ReplayName": replay.name,
        "EventSourceArn": scope.archive_arn(replay.archive_name),
        "State": replay.state,
        "StateReason": replay.state_reason,
        "EventStartTime": replay.event_start_time,
        "EventEndTime": replay.event_end_time,
        "EventLastReplayedTime": replay.last_replayed_time,
        "ReplayStartTime": replay.replay_start_time,
        "ReplayEndTime": replay.replay_end_time,
    }


@registry.operation("AWSEvents", "StartReplay", write=True)
def start_replay_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Create the replay (``STARTING``), commit, then start its runner."""
    p = _Params(params)
    name = _name(p, "ReplayName")
    description = p.string("Description", max_len=512)
    source = p.string("EventSourceArn", required=True, min_len=1, max_len=1600, pattern=EVENTS_ARN)
    start = p.timestamp("EventStartTime", required=True)
    end = p.timestamp("EventEndTime", required=True)
    destination = _Params(p.mapping("Destination", required=True) or {})
    p.done()
    destination_arn = destination.string(
        "Arn", required=True, min_len=1, max_len=1600, path="destination.arn"
    )
    filter_arns = destination.strings("FilterArns")
    destination.done()
    scope = _scope(call)
    with _session() as session:
        replay = archives.start_replay(
            session,
            scope,
            name=name,
            event_source_arn=source or "",
            destination_arn=destination_arn or "",
            filter_arns=filter_arns,
            start=_present(start),
            end=_present(end),
            description=description,
        )
        answer = {
            "ReplayArn": scope.replay_arn(replay.name),
            "State": replay.state,
            "ReplayStartTime": replay.replay_start_time,
        }
    try:
        _wired().start_replay(name)
    except Exception as exc:
        log.exception("could not start the runner of replay %s", name)
        reason = f"The replay could not be started: {type(exc).__name__}: {exc}"
        with _session() as session:
            archives.fail_replay(session, name, reason)
        answer.update(State="FAILED", StateReason=reason[:512])
    return answer


@registry.operation("AWSEvents", "DescribeReplay", write=False)
def describe_replay_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p, "ReplayName")
    p.done()
    scope = _scope(call)
    with _session() as session:
        replay = archives.get_replay(session, name)
        return _clean(
            {
                **_replay_summary(scope, replay),
                "ReplayArn": scope.replay_arn(replay.name),
                "Description": replay.description,
                "Destination": _clean(
                    {
                        "Arn": scope.bus_arn(replay.destination_bus),
                        "FilterArns": replay.filter_rules or None,
                    }
                ),
            }
        )


@registry.operation("AWSEvents", "ListReplays", write=False)
def list_replays_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    prefix = p.string("NamePrefix", min_len=1, max_len=64, pattern=NAME)
    state = p.string("State", enum=archives.REPLAY_STATES)
    source = p.string("EventSourceArn", min_len=1, max_len=1600, pattern=EVENTS_ARN)
    limit, token = _paging(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        page = archives.list_replays(
            session,
            scope,
            name_prefix=prefix,
            event_source_arn=source,
            state=state,
            limit=limit,
            token=token,
        )
        return _page(page, "Replays", lambda r: _clean(_replay_summary(scope, r)))


@registry.operation("AWSEvents", "CancelReplay", write=True)
def cancel_replay_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """``CANCELLING`` now; the runner stops at its next batch and records ``CANCELLED``."""
    p = _Params(params)
    name = _name(p, "ReplayName")
    p.done()
    scope = _scope(call)
    with _session() as session:
        replay = archives.cancel_replay(session, name)
        return _clean(
            {
                "ReplayArn": scope.replay_arn(replay.name),
                "State": replay.state,
                "StateReason": replay.state_reason,
            }
        )


# --- connections --------------------------------------------------------------------------


def _connection_times(connection: Connection) -> dict[str, Any]:
    return {
        "CreationTime": connection.created_at,
        "LastModifiedTime": connection.last_modified_at,
        "LastAuthorizedTime": connection.last_modified_at,
    }


def _connection_summary(scope: Scope, connection: Connection) -> dict[str, Any]:
    return {
        "ConnectionArn": connections.connection_arn(scope, connection),
        "Name": connection.name,
        "ConnectionState": connection.state,
        "AuthorizationType": connection.authorization_type,
        **_connection_times(connection),
    }


def _connection_params(p: _Params, *, create: bool) -> tuple[str | None, dict[str, Any] | None]:
    authorization_type = p.string(
        "AuthorizationType", required=create, enum=connections.AUTHORIZATION_TYPES
    )
    auth = p.mapping("AuthParameters", required=create)
    connectivity = p.mapping("InvocationConnectivityParameters")
    p.string("KmsKeyIdentifier", max_len=2048)
    p.done()
    if connectivity is not None or (auth or {}).get("ConnectivityParameters") is not None:
        raise Validation(
            "Private API connectivity (ConnectivityParameters) is not supported by smokehouse."
        )
    return authorization_type, auth


@registry.operation("AWSEvents", "CreateConnection", write=True)
def create_connection_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Credentials for API destinations: API_KEY or BASIC (OAuth is refused for now)."""
    p = _Params(params)
    name = _name(p)
    description = p.string("Description", max_len=512)
    authorization_type, auth = _connection_params(p, create=True)
    with _session() as session:
        connection = connections.create_connection(
            session,
            name=name,
            authorization_type=authorization_type or "",
            auth_parameters=auth or {},
            description=description,
        )
        summary = _connection_summary(_scope(call), connection)
        return {
            key: summary[key]
            for key in ("ConnectionArn", "ConnectionState", "CreationTime", "LastModifiedTime")
        }


@registry.operation("AWSEvents", "DescribeConnection", write=False)
def describe_connection_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Everything but the secrets: passwords, API key values and secret parameter values."""
    p = _Params(params)
    name = _name(p)
    p.done()
    with _session() as session:
        connection = connections.get_connection(session, name)
        return _clean(
            {
                **_connection_summary(_scope(call), connection),
                "Description": connection.description,
                "AuthParameters": connections.public_auth_parameters(connection),
            }
        )


@registry.operation("AWSEvents", "ListConnections", write=False)
def list_connections_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    prefix = p.string("NamePrefix", min_len=1, max_len=64, pattern=NAME)
    state = p.string("ConnectionState", enum=connections.CONNECTION_STATES)
    limit, token = _paging(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        page = connections.list_connections(
            session, name_prefix=prefix, state=state, limit=limit, token=token
        )
        return _page(page, "Connections", lambda c: _connection_summary(scope, c))


@registry.operation("AWSEvents", "UpdateConnection", write=True)
def update_connection_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """Given parameters are merged into the stored ones; the rest keep their values."""
    p = _Params(params)
    name = _name(p)
    description = p.string("Description", max_len=512)
    authorization_type, auth = _connection_params(p, create=False)
    with _session() as session:
        connection = connections.update_connection(
            session,
            name,
            description=description,
            authorization_type=authorization_type,
            auth_parameters=auth,
        )
        summary = _connection_summary(_scope(call), connection)
        return {
            key: summary[key]
            for key in (
                "ConnectionArn",
                "ConnectionState",
                "CreationTime",
                "LastModifiedTime",
                "LastAuthorizedTime",
            )
        }


@registry.operation("AWSEvents", "DeleteConnection", write=True)
def delete_connection_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        connection = connections.delete_connection(session, name)
        return {
            "ConnectionArn": connections.connection_arn(scope, connection),
            "ConnectionState": "DELETING",  # what AWS answers; ours is gone already
            **_connection_times(connection),
        }


# --- API destinations ---------------------------------------------------------------------


def _api_destination(session: Session, scope: Scope, destination: ApiDestination) -> dict[str, Any]:
    connection = session.get(Connection, destination.connection_name)
    return _clean(
        {
            "ApiDestinationArn": connections.api_destination_arn(scope, destination),
            "Name": destination.name,
            "ApiDestinationState": destination.state,
            "ConnectionArn": (
                connections.connection_arn(scope, connection) if connection is not None else None
            ),
            "InvocationEndpoint": destination.endpoint,
            "HttpMethod": destination.http_method,
            "InvocationRateLimitPerSecond": destination.invocation_rate_limit_per_second,
            "CreationTime": destination.created_at,
            "LastModifiedTime": destination.last_modified_at,
        }
    )


def _destination_short(scope: Scope, destination: ApiDestination) -> dict[str, Any]:
    return {
        "ApiDestinationArn": connections.api_destination_arn(scope, destination),
        "ApiDestinationState": destination.state,
        "CreationTime": destination.created_at,
        "LastModifiedTime": destination.last_modified_at,
    }


def _destination_params(
    p: _Params, *, create: bool
) -> tuple[str | None, str | None, str | None, int | None]:
    connection_arn = p.string(
        "ConnectionArn", required=create, min_len=1, max_len=1600, pattern=CONNECTION_ARN
    )
    endpoint = p.string(
        "InvocationEndpoint", required=create, min_len=1, max_len=2048, pattern=HTTPS_ENDPOINT
    )
    method = p.string("HttpMethod", required=create, enum=connections.HTTP_METHODS)
    rate = p.integer("InvocationRateLimitPerSecond", minimum=1)
    p.done()
    return connection_arn, endpoint, method, rate


@registry.operation("AWSEvents", "CreateApiDestination", write=True)
def create_api_destination_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """An HTTP endpoint plus a connection; ``http://`` is allowed (LAN targets), unlike AWS."""
    p = _Params(params)
    name = _name(p)
    description = p.string("Description", max_len=512)
    connection_arn, endpoint, method, rate = _destination_params(p, create=True)
    with _session() as session:
        destination = connections.create_api_destination(
            session,
            name=name,
            connection_arn=connection_arn or "",
            endpoint=endpoint or "",
            http_method=method or "",
            rate_limit=rate,
            description=description,
        )
        return _destination_short(_scope(call), destination)


@registry.operation("AWSEvents", "DescribeApiDestination", write=False)
def describe_api_destination_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p)
    p.done()
    with _session() as session:
        destination = connections.get_api_destination(session, name)
        return {
            **_api_destination(session, _scope(call), destination),
            **_clean({"Description": destination.description}),
        }


@registry.operation("AWSEvents", "ListApiDestinations", write=False)
def list_api_destinations_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    prefix = p.string("NamePrefix", min_len=1, max_len=64, pattern=NAME)
    connection_arn = p.string("ConnectionArn", min_len=1, max_len=1600, pattern=CONNECTION_ARN)
    limit, token = _paging(p)
    p.done()
    scope = _scope(call)
    with _session() as session:
        page = connections.list_api_destinations(
            session, name_prefix=prefix, connection_arn=connection_arn, limit=limit, token=token
        )
        return _page(page, "ApiDestinations", lambda d: _api_destination(session, scope, d))


@registry.operation("AWSEvents", "UpdateApiDestination", write=True)
def update_api_destination_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p)
    description = p.string("Description", max_len=512)
    connection_arn, endpoint, method, rate = _destination_params(p, create=False)
    with _session() as session:
        destination = connections.update_api_destination(
            session,
            name,
            connection_arn=connection_arn,
            endpoint=endpoint,
            http_method=method,
            rate_limit=rate,
            description=description,
        )
        return _destination_short(_scope(call), destination)


@registry.operation("AWSEvents", "DeleteApiDestination", write=True)
def delete_api_destination_op(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    p = _Params(params)
    name = _name(p)
    p.done()
    with _session() as session:
        connections.delete_api_destination(session, name)
    return {}
