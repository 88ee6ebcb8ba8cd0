"""State machines declared as files: the seed's workflows as data, registered at every start.

One file per state machine, the ASL definition exactly as Step Functions takes it; the file name
gives the rest, so the definition stays plain ASL that any Step Functions tool can read:

    app/definitions/state_machines/hello-world.asl.json            STANDARD, named hello-world
    <SMOKEHOUSE_DEFINITIONS_DIR>/state_machines/ingest.express.asl.json   EXPRESS, named ingest

Applying is idempotent and safe at every start-up (several API processes may run it at once):

* every file is validated first; one bad file is a :class:`DefinitionError` naming it, and
  nothing is written;
* a machine records the file it came from (``managed_by = "definitions:<file>"``); applying the
  same files again writes nothing; a changed file updates the machine's definition (executions
  already running keep theirs);
* a machine whose file is gone is deleted, if that file's directory is among those applied;
  machines created through the API are never touched, and a file may not take an API machine's
  name. A file may not change a machine's type (neither may AWS): rename it instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import app
from app.aws.errors import AwsError
from app.config import ConfigError, Settings
from app.db import get_database, utcnow
from app.workflows import arns, machines, service
from app.workflows.models import StateMachine

MANAGED_PREFIX = "definitions:"
APP_ROOT = Path(app.__file__).resolve().parent
SHIPPED = APP_ROOT / "definitions" / "state_machines"
SUFFIX = ".asl.json"
EXPRESS_SUFFIX = ".express.asl.json"


class DefinitionError(Exception):
    """A state machine file is invalid; the message names the file."""


@dataclass(frozen=True, slots=True)
class MachineFile:
    name: str
    type: str
    definition: str
    label: str  # stored in managed_by, after the prefix


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def summary(self) -> str:
        return (
            f"state machines: {len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )


def definition_paths(settings: Settings) -> list[Path]:
    """The shipped directory, then ``<definitions_dir>/state_machines`` if it exists."""
    paths = [SHIPPED]
    if settings.definitions_dir is not None:
        if not settings.definitions_dir.is_dir():
            raise ConfigError(
                "SMOKEHOUSE_DEFINITIONS_DIR", f"{settings.definitions_dir} is not a directory"
            )
        mine = settings.definitions_dir / "state_machines"
        if mine.is_dir():
            paths.append(mine)
    return paths


def file_label(path: Path) -> str:
    """Relative inside the package (stable when the installation moves), else absolute."""
    resolved = path.resolve()
    try:
        return (Path("app") / resolved.relative_to(APP_ROOT)).as_posix()
    except ValueError:
        return resolved.as_posix()


def parse_file(path: Path) -> MachineFile:
    name, machine_type = path.name, "STANDARD"
    if name.endswith(EXPRESS_SUFFIX):
        name, machine_type = name.removesuffix(EXPRESS_SUFFIX), "EXPRESS"
    elif name.endswith(SUFFIX):
        name = name.removesuffix(SUFFIX)
    else:
        raise DefinitionError(f"{path}: a state machine file ends in {SUFFIX}")
    definition = path.read_text(encoding="utf-8")
    try:
        arns.check_name(name)
        machines.check(definition, machine_type, aws_sdk_allow=None)  # checked when applied
    except AwsError as exc:
        raise DefinitionError(f"{path}: {exc.message}") from None
    return MachineFile(name, machine_type, definition, file_label(path))


def _files(paths: Sequence[Path]) -> tuple[list[Path], set[str]]:
    files: list[Path] = []
    owned_dirs: set[str] = set()
    for path in paths:
        if path.is_dir():
            owned_dirs.add(file_label(path))
            files.extend(sorted(path.glob(f"*{SUFFIX}")))
        elif path.exists():
            files.append(path)
    return files, owned_dirs


def load_files(paths: Sequence[Path]) -> tuple[list[MachineFile], set[str], set[str]]:
    """Parse and validate every file; returns them, the owned files and the owned directories."""
    files, owned_dirs = _files(paths)
    parsed = [parse_file(f) for f in files]
    seen: dict[str, str] = {}
    for machine in parsed:
        if machine.name in seen:
            raise DefinitionError(
                f"{machine.label}: state machine {machine.name!r} is also defined in "
                f"{seen[machine.name]}"
            )
        seen[machine.name] = machine.label
    return parsed, {m.label for m in parsed}, owned_dirs


def _apply_one(
    session: Session, settings: Settings, wanted: MachineFile, report: ApplyReport
) -> None:
    label = MANAGED_PREFIX + wanted.label
    existing = session.scalar(select(StateMachine).where(StateMachine.name == wanted.name))
    if existing is None:
        service.create_machine(
            session,
            settings,
            name=wanted.name,
            definition=wanted.definition,
            role_arn=f"arn:aws:iam::{settings.account_id}:role/smokehouse",
            machine_type=wanted.type,
            managed_by=label,
            now=utcnow(),
        )
        report.created.append(wanted.name)
        return
    if not (existing.managed_by or "").startswith(MANAGED_PREFIX):
        raise DefinitionError(
            f"{wanted.label}: state machine {wanted.name!r} exists and was not created from a "
            "definition file; rename the file or delete that state machine"
        )
    if existing.type != wanted.type:
        raise DefinitionError(
            f"{wanted.label}: state machine {wanted.name!r} is {existing.type}; a type cannot "
            "change: rename the file or delete that state machine"
        )
    digest = machines.definition_hash(wanted.definition)
    if existing.definition_hash == digest and existing.managed_by == label:
        report.unchanged.append(wanted.name)
        return
    if existing.definition_hash != digest:
        service.update_machine(
            session, existing, definition=wanted.definition, now=utcnow(), settings=settings
        )
    existing.managed_by = label
    report.updated.append(wanted.name)


def apply_definitions(session: Session, settings: Settings, paths: Sequence[Path]) -> ApplyReport:
    """Validate everything under ``paths``, then create/update/delete to match. Never commits."""
    wanted, owned_files, owned_dirs = load_files(paths)
    if session.get_bind().dialect.name == "postgresql":
        # Several API processes apply at start-up at once: take turns (released at commit).
        session.execute(text("SELECT pg_advisory_xact_lock(7403618)"))
    report = ApplyReport()
    for one in wanted:
        _apply_one(session, settings, one, report)
    declared = {m.name for m in wanted}
    managed = session.scalars(
        select(StateMachine).where(StateMachine.managed_by.startswith(MANAGED_PREFIX))
    ).all()
    for machine in managed:
        owner = (machine.managed_by or "").removeprefix(MANAGED_PREFIX)
        owned = owner in owned_files or owner.rpartition("/")[0] in owned_dirs
        if owned and machine.name not in declared and machine.status == "ACTIVE":
            service.delete_machine(session, machine.arn)
            report.deleted.append(machine.name)
    session.flush()
    return report


def apply_all(settings: Settings) -> ApplyReport:
    """The start-up hook: apply the shipped and the user's state machines in one transaction.

    Retried once on a database conflict (two processes racing on SQLite): the second pass finds
    everything in place."""
    paths = definition_paths(settings)
    database = get_database(settings.sqlalchemy_url)
    for attempt in range(2):
        try:
            with database.session() as session:
                return apply_definitions(session, settings, paths)
        except DBAPIError:
            if attempt:
                raise
    raise AssertionError("unreachable")
