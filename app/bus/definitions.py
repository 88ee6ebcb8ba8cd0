"""Rules and targets declared in YAML files: the seed's routing as data, applied idempotently.

A file looks like::

    rules:
      - name: log-smokehouse-test-events
        bus: default                  # optional; a missing custom bus is created
        description: Log test events
        state: ENABLED                # optional; see below
        event_pattern: {source: ["smokehouse.test"]}
        targets:
          - id: log
            arn: arn:smokehouse:handler:log
            input_path: $.detail

Target keys are AWS's ``Target`` fields in snake_case (``input_transformer.input_paths_map``,
``retry_policy.maximum_retry_attempts``, ``dead_letter_config.arn``, ...); AWS's own PascalCase
keys work too. Values that are the user's data (``input``, ``input_paths_map``,
``header_parameters``, ``query_string_parameters``) are kept as written. ``input`` is JSON text
like AWS's ``Input``; any non-string value is serialised for you.

Semantics, so that applying at every start-up is safe:

* Everything is validated before anything is written; a problem is one :class:`DefinitionError`
  naming the file, the rule and what is wrong.
* Each rule records the file it came from (``managed_by = "definitions:<file>"``). Applying the
  same files again writes nothing (the bus ``revision`` does not move, so no matcher is rebuilt).
* A rule a file no longer declares is deleted — only when that file (or its directory) is among
  the paths applied, and only rules that came from definitions: rules made through the API are
  never touched, and a file may not claim an API rule's name.
* ``state`` in a file wins over runtime changes; leave it out to create the rule ENABLED and then
  enable/disable it at runtime without the next apply undoing that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import app
from app.bus.arns import DEFAULT_BUS
from app.bus.models import EventBus, Rule
from app.bus.patterns import InvalidEventPattern, parse_pattern
from app.bus.service import (
    BUS_NAME,
    MAX_TARGETS_PER_RULE,
    RULE_NAME,
    RULE_STATES,
    TARGET_ID,
    create_bus,
    delete_rule,
    put_rule,
    put_targets,
    remove_targets,
)
from app.bus.targets import validate_target
from app.config import ConfigError, Settings

MANAGED_PREFIX = "definitions:"
APP_ROOT = Path(app.__file__).resolve().parent
SHIPPED_RULES = APP_ROOT / "definitions" / "rules"
YAML_SUFFIXES = (".yaml", ".yml")
MAX_MANAGED_BY = 256

RULE_KEYS = {"name", "bus", "description", "state", "event_pattern", "role_arn", "targets"}
TARGET_FIELDS = {
    "Id",
    "Arn",
    "RoleArn",
    "Input",
    "InputPath",
    "InputTransformer",
    "RetryPolicy",
    "DeadLetterConfig",
    "HttpParameters",
    "SqsParameters",
    "KinesisParameters",
    "EcsParameters",
    "BatchParameters",
    "RunCommandParameters",
    "RedshiftDataParameters",
    "SageMakerPipelineParameters",
    "AppSyncParameters",
}
# Fields whose value is the user's data (their keys are not field names): kept as written.
VERBATIM = {"Input", "InputPathsMap", "HeaderParameters", "QueryStringParameters"}


class DefinitionError(ValueError):
    """Definitions that cannot be applied; ``str()`` names the file, the rule and the problem."""


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    file: Path
    label: str  # the value stored in Rule.managed_by
    bus: str
    name: str
    event_pattern: str
    state: str | None
    description: str | None
    role_arn: str | None
    targets: tuple[dict[str, Any], ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.bus, self.name)

    def where(self) -> str:
        return f"{self.file}: rule {self.name!r}"


@dataclass
class ApplyReport:
    """What an apply did, by ``bus/rule``; ``changed`` is False when nothing was written."""

    files: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    buses_created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted or self.buses_created)

    def summary(self) -> str:
        return (
            f"{len(self.files)} files: {len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
            + (f", buses created: {', '.join(self.buses_created)}" if self.buses_created else "")
        )


# --- where definitions live ---------------------------------------------------------------


def definition_paths(settings: Settings) -> list[Path]:
    """The shipped rules directory, then the user's ``<definitions_dir>/rules`` if it exists."""
    paths = [SHIPPED_RULES]
    if settings.definitions_dir is not None:
        if not settings.definitions_dir.is_dir():
            raise ConfigError(
                "SMOKEHOUSE_DEFINITIONS_DIR", f"{settings.definitions_dir} is not a directory"
            )
        user_rules = settings.definitions_dir / "rules"
        if user_rules.is_dir():
            paths.append(user_rules)
    return paths


def file_label(path: Path) -> str:
    """A stable name for a file: relative inside the package (so shipped rules keep their owner
    when the installation moves), absolute elsewhere."""
    resolved = path.resolve()
    try:
        return (Path("app") / resolved.relative_to(APP_ROOT)).as_posix()
    except ValueError:
        return resolved.as_posix()


def _expand(paths: Iterable[Path]) -> tuple[list[Path], set[str], set[str]]:
    """Files to read, plus the labels of files and directories whose rules this apply owns."""
    files: list[Path] = []
    owned_files: set[str] = set()
    owned_dirs: set[str] = set()
    for path in paths:
        if path.is_dir():
            owned_dirs.add(file_label(path))
            found = sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DefinitionError(f"{path}: no such file or directory")
    for file in files:
        owned_files.add(file_label(file))
    return files, owned_files, owned_dirs


# --- parsing (pure) -----------------------------------------------------------------------


def _pascal(key: str) -> str:
    if "_" not in key and key[:1].isupper():
        return key  # already AWS's spelling
    return "".join(word[:1].upper() + word[1:] for word in key.split("_"))


def _aws_keys(value: Any) -> Any:
    """snake_case keys → AWS's PascalCase, recursively, except inside user-keyed maps."""
    if isinstance(value, Mapping):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            name = _pascal(str(key))
            converted[name] = item if name in VERBATIM else _aws_keys(item)
        return converted
    if isinstance(value, list):
        return [_aws_keys(item) for item in value]
    return value


def _target_spec(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{where}: each target must be a mapping with id and arn")
    spec = _aws_keys(raw)
    target_id = spec.get("Id")
    where = f"{where}: target {target_id!r}"
    unknown = sorted(set(spec) - TARGET_FIELDS)
    if unknown:
        raise DefinitionError(f"{where}: unknown field(s) {', '.join(unknown)}")
    if not isinstance(target_id, str) or not TARGET_ID.match(target_id):
        raise DefinitionError(f"{where}: id must be 1-64 characters of [.-_A-Za-z0-9]")
    if not isinstance(spec.get("Arn"), str) or not spec["Arn"]:
        raise DefinitionError(f"{where}: arn is required")
    if "Input" in spec and spec["Input"] is not None and not isinstance(spec["Input"], str):
        spec["Input"] = json.dumps(spec["Input"])
    given = [k for k in ("Input", "InputPath", "InputTransformer") if spec.get(k) is not None]
    if len(given) > 1:
        raise DefinitionError(f"{where}: give only one of input, input_path, input_transformer")
    if spec.get("Input") is not None:
        try:
            json.loads(spec["Input"])
        except ValueError:
            raise DefinitionError(f"{where}: input is not valid JSON text") from None
    return {k: v for k, v in spec.items() if v is not None}


def _optional_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise DefinitionError(f"{where}: {key} must be a string")
    return value


def _rule(raw: Any, file: Path, label: str, index: int) -> RuleDefinition:
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{file}: rules[{index}] must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not RULE_NAME.match(name):
        raise DefinitionError(
            f"{file}: rules[{index}]: name {name!r} must be 1-64 characters of [.-_A-Za-z0-9]"
        )
    where = f"{file}: rule {name!r}"
    unknown = sorted(set(map(str, raw)) - RULE_KEYS)
    if unknown:
        hint = " (schedules are not supported yet)" if "schedule_expression" in unknown else ""
        raise DefinitionError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}")
    bus = _optional_str(raw, "bus", where) or DEFAULT_BUS
    if bus != DEFAULT_BUS and (not BUS_NAME.match(bus) or "/" in bus or bus.startswith("aws.")):
        raise DefinitionError(f"{where}: bus name {bus!r} is not valid")
    state = raw.get("state")  # YAML reads a bare ON/OFF as a boolean: say what it saw
    if state is not None and state not in RULE_STATES:
        raise DefinitionError(f"{where}: state must be ENABLED or DISABLED, not {state!r}")
    pattern = raw.get("event_pattern")
    if pattern is None:
        raise DefinitionError(f"{where}: event_pattern is required")
    if not isinstance(pattern, str | Mapping):
        raise DefinitionError(f"{where}: event_pattern must be a mapping or JSON text")
    pattern_text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    try:
        parse_pattern(pattern_text)
    except InvalidEventPattern as exc:
        raise DefinitionError(f"{where}: {exc.message}") from None
    targets_raw = raw.get("targets") or []
    if not isinstance(targets_raw, list):
        raise DefinitionError(f"{where}: targets must be a list")
    targets = tuple(_target_spec(t, where) for t in targets_raw)
    if len(targets) > MAX_TARGETS_PER_RULE:
        raise DefinitionError(f"{where}: at most {MAX_TARGETS_PER_RULE} targets per rule")
    ids = [t["Id"] for t in targets]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DefinitionError(f"{where}: duplicate target id(s) {', '.join(duplicates)}")
    return RuleDefinition(
        file=file,
        label=label,
        bus=bus,
        name=name,
        event_pattern=pattern_text,
        state=state,
        description=_optional_str(raw, "description", where),
        role_arn=_optional_str(raw, "role_arn", where),
        targets=targets,
    )


def parse_file(path: Path) -> list[RuleDefinition]:
    """Read one YAML file into rule definitions; no database needed."""
    label = MANAGED_PREFIX + file_label(path)
    if len(label) > MAX_MANAGED_BY:
        raise DefinitionError(f"{path}: path too long to record as the rules' owner")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise DefinitionError(f"{path}: not valid YAML: {problem}") from None
    if document is None:
        return []
    if not isinstance(document, Mapping) or set(map(str, document)) - {"rules"}:
        raise DefinitionError(f"{path}: expected a mapping with one key, rules")
    rules = document.get("rules") or []
    if not isinstance(rules, list):
        raise DefinitionError(f"{path}: rules must be a list")
    return [_rule(raw, path, label, index) for index, raw in enumerate(rules)]


def load_definitions(files: Sequence[Path]) -> list[RuleDefinition]:
    """Parse every file and reject a (bus, rule) declared twice."""
    seen: dict[tuple[str, str], RuleDefinition] = {}
    definitions: list[RuleDefinition] = []
    for file in files:
        for definition in parse_file(file):
            other = seen.get(definition.key)
            if other is not None:
                raise DefinitionError(
                    f"{definition.where()}: also declared in {other.file} (bus {definition.bus!r})"
                )
            seen[definition.key] = definition
            definitions.append(definition)
    return definitions


# --- applying -----------------------------------------------------------------------------


def _check_against_database(session: Session, definitions: Sequence[RuleDefinition]) -> None:
    """What needs the database: target adapters (handlers, connections) and name clashes with
    rules created through the API."""
    for definition in definitions:
        for spec in definition.targets:
            problem = validate_target(session, spec)
            if problem is not None:
                raise DefinitionError(f"{definition.where()}: target {spec['Id']!r}: {problem}")
        existing = _find_rule(session, definition.bus, definition.name)
        if existing is not None and not (existing.managed_by or "").startswith(MANAGED_PREFIX):
            raise DefinitionError(
                f"{definition.where()}: bus {definition.bus!r} already has a rule with this name "
                "that was created through the API; delete or rename one of them"
            )


def _find_rule(session: Session, bus: str, name: str) -> Rule | None:
    return session.scalar(select(Rule).where(Rule.bus_name == bus, Rule.name == name))


def _rule_differs(rule: Rule, definition: RuleDefinition) -> bool:
    return (
        rule.event_pattern != definition.event_pattern
        or rule.description != definition.description
        or rule.role_arn != definition.role_arn
        or rule.managed_by != definition.label
        or rule.schedule_expression is not None
        or (definition.state is not None and rule.state != definition.state)
    )


def _apply_rule(session: Session, definition: RuleDefinition) -> str:
    """Write one rule and its targets if they differ; return created, updated or unchanged."""
    rule = _find_rule(session, definition.bus, definition.name)
    outcome = "unchanged"
    if rule is None or _rule_differs(rule, definition):
        outcome = "created" if rule is None else "updated"
        rule = put_rule(
            session,
            name=definition.name,
            bus_name=definition.bus,
            event_pattern=definition.event_pattern,
            state=definition.state,
            description=definition.description,
            role_arn=definition.role_arn,
            managed_by=definition.label,
        )
    current = {t.target_id: t.spec for t in rule.targets}
    wanted = {spec["Id"]: spec for spec in definition.targets}
    gone = [target_id for target_id in current if target_id not in wanted]
    changed = [spec for target_id, spec in wanted.items() if current.get(target_id) != spec]
    if gone:  # first, so replacing targets never trips the five-target limit
        remove_targets(session, definition.bus, definition.name, gone)
    if changed:
        failed = put_targets(session, definition.bus, definition.name, changed)
        if failed:
            raise DefinitionError(
                f"{definition.where()}: target {failed[0].target_id!r}: {failed[0].message}"
            )
    if (gone or changed) and outcome == "unchanged":
        outcome = "updated"
    return outcome


def apply_definitions(session: Session, paths: Sequence[Path]) -> ApplyReport:
    """Validate all definitions under ``paths`` (files or directories), then apply them.

    Raises :class:`DefinitionError` before writing anything if a definition is invalid. Does not
    commit; if a write fails half-way (it should not, everything was checked), the caller's
    rollback leaves the database as it was.
    """
    from app.handlers import load_handler_modules

    load_handler_modules()  # built-in handlers are valid targets even outside the API process
    files, owned_files, owned_dirs = _expand(paths)
    definitions = load_definitions(files)
    if session.get_bind().dialect.name == "postgresql":
        # Several API processes apply at start-up at once: take turns (released at commit).
        session.execute(text("SELECT pg_advisory_xact_lock(7403617)"))
    _check_against_database(session, definitions)

    report = ApplyReport(files=[str(f) for f in files])
    for bus in sorted({d.bus for d in definitions}):
        if session.get(EventBus, bus) is None:
            create_bus(session, bus, description="Created for rule definitions")
            report.buses_created.append(bus)
    for definition in definitions:
        outcome = _apply_rule(session, definition)
        getattr(report, outcome).append(f"{definition.bus}/{definition.name}")

    declared = {d.key for d in definitions}
    managed = session.scalars(
        select(Rule).where(Rule.managed_by.startswith(MANAGED_PREFIX, autoescape=True))
    ).all()
    for rule in managed:
        owner = (rule.managed_by or "").removeprefix(MANAGED_PREFIX)
        owned = owner in owned_files or owner.rpartition("/")[0] in owned_dirs
        if owned and (rule.bus_name, rule.name) not in declared:
            delete_rule(session, rule.bus_name, rule.name, force=True)
            report.deleted.append(f"{rule.bus_name}/{rule.name}")
    session.flush()
    return report


def apply_all(settings: Settings) -> ApplyReport:
    """Apply the shipped and the user's definitions in one transaction (the start-up hook).

    Retried once on a database conflict: two processes starting together may race on SQLite,
    and the second pass then finds everything in place.
    """
    from app.db import get_database
    from app.handlers import load_handler_modules

    load_handler_modules(settings.handler_module_list)
    paths = definition_paths(settings)
    database = get_database(settings.sqlalchemy_url)
    for attempt in range(2):
        try:
            with database.session() as session:
                return apply_definitions(session, paths)
        except DBAPIError:
            if attempt:
                raise
    raise AssertionError("unreachable")


__all__ = [
    "SHIPPED_RULES",
    "ApplyReport",
    "DefinitionError",
    "RuleDefinition",
    "apply_all",
    "apply_definitions",
    "definition_paths",
    "file_label",
    "load_definitions",
    "parse_file",
]
