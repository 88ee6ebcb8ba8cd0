"""State machines and executions: Step Functions' control plane over our tables.

Services take a Session and never commit; what must happen after the commit (sending tasks,
timers and bus deliveries) is returned as :class:`~app.workflows.store.Written` for the caller to
hand to :func:`~app.workflows.dispatch.after_commit`. :func:`start` is the exception that proves
the rule: it is its own unit of work, shared by every entry point that starts an execution (the
AWS API, GraphQL, runners' reconcile, work-queue messages).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import after_commit, get_database, utcnow
from app.workflows import arns, dispatch, errors, machines, store
from app.workflows.asl import Env, Start, advance
from app.workflows.models import Execution, ExecutionEvent, StateMachine, StateMachineDefinition
from app.workflows.status import StatusChange, from_state, publish

MAX_INPUT_BYTES = 256 * 1024
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
DEFAULT_LOGGING: dict[str, Any] = {"level": "OFF", "includeExecutionData": False}
T = TypeVar("T")


def unit_of_work(settings: Settings, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction, retried once when a concurrent request inserted the same
    name first: the second pass sees that row and answers as AWS would (idempotent start,
    ``ExecutionAlreadyExists``, ``StateMachineAlreadyExists``)."""
    database = get_database(settings.sqlalchemy_url)
    for attempt in range(2):
        try:
            with database.session() as session:
                return work(session)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def scope(settings: Settings) -> arns.Scope:
    return arns.Scope(settings.region, settings.account_id)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_token: str | None


def paginate(
    session: Session, statement: Select[Any], limit: Any, token: Any, maximum: int = 1000
) -> Page:
    """Offset paging with an opaque token; a token we did not issue is ``InvalidToken``."""
    size = int(limit) if isinstance(limit, int) and 0 < limit <= maximum else 100
    if limit is not None and not (isinstance(limit, int) and 0 <= limit <= maximum):
        raise errors.validation(
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value less than or equal to {maximum}"
        )
    offset = 0
    if token:
        if not isinstance(token, str) or not token.isdigit():
            raise errors.invalid_token(f"Invalid token: {token}")
        offset = int(token)
    rows = list(session.execute(statement.offset(offset).limit(size + 1)))
    more = len(rows) > size
    return Page(rows[:size], str(offset + size) if more else None)


# --- state machines -------------------------------------------------------------------------


def get_machine(session: Session, arn: Any) -> StateMachine:
    arns.state_machine_name(arn)
    machine = session.scalar(select(StateMachine).where(StateMachine.arn == arn))
    if machine is None:
        raise errors.state_machine_does_not_exist(str(arn))
    return machine


def _role(role_arn: Any) -> str:
    if not isinstance(role_arn, str) or not role_arn.startswith("arn:"):
        raise errors.invalid_arn(f"Invalid Role Arn: {role_arn}")
    return role_arn


def create_machine(
    session: Session,
    settings: Settings,
    *,
    name: Any,
    definition: Any,
    role_arn: Any,
    machine_type: str = "STANDARD",
    logging: dict[str, Any] | None = None,
    description: str | None = None,
    managed_by: str | None = None,
    now: datetime,
) -> tuple[StateMachine, bool]:
    """CreateStateMachine; idempotent for the same name, definition and type (as on AWS).
    Returns the machine and whether it was created."""
    arns.check_name(name)
    role = _role(role_arn)
    machines.check(definition, machine_type, aws_sdk_allow=settings.egress.aws_sdk_allow)
    arn = scope(settings).state_machine(name)
    existing = session.scalar(select(StateMachine).where(StateMachine.name == name))
    if existing is not None:
        if existing.status == "DELETING":
            raise errors.state_machine_deleting(existing.arn)
        same = (
            existing.definition_hash == machines.definition_hash(definition)
            and existing.type == machine_type
            and (logging is None or existing.logging_configuration == logging)
        )
        if not same:
            raise errors.state_machine_already_exists(existing.arn)
        return existing, False
    machine = StateMachine(
        id=str(uuid.uuid4()),
        name=name,
        arn=arn,
        type=machine_type,
        status="ACTIVE",
        definition_hash=machines.store(session, definition),
        role_arn=role,
        description=description,
        logging_configuration=logging,
        revision_id=str(uuid.uuid4()),
        managed_by=managed_by,
        created_at=now,
        updated_at=now,
    )
    session.add(machine)
    session.flush()
    return machine, True


def update_machine(
    session: Session,
    machine: StateMachine,
    *,
    definition: Any = None,
    role_arn: Any = None,
    logging: dict[str, Any] | None = None,
    now: datetime,
    settings: Settings,
) -> StateMachine:
    """UpdateStateMachine; running executions keep the definition they started with."""
    if definition is None and role_arn is None and logging is None:
        raise errors.missing_parameter(
            "Either the definition, the role ARN, the LoggingConfiguration, or the "
            "TracingConfiguration must be specified"
        )
    if machine.status == "DELETING":
        raise errors.state_machine_deleting(machine.arn)
    if definition is not None:
        machines.check(definition, machine.type, aws_sdk_allow=settings.egress.aws_sdk_allow)
        machine.definition_hash = machines.store(session, definition)
    if role_arn is not None:
        machine.role_arn = _role(role_arn)
    if logging is not None:
        machine.logging_configuration = logging
    machine.revision_id = str(uuid.uuid4())
    machine.updated_at = now
    session.flush()
    return machine


def definition_of(session: Session, digest: str) -> str:
    text = session.scalar(
        select(StateMachineDefinition.definition).where(StateMachineDefinition.hash == digest)
    )
    assert text is not None, f"definition {digest} is missing"
    return text


def list_machines(session: Session, limit: Any, token: Any) -> Page:
    statement = (
        select(StateMachine)
        .where(StateMachine.status == "ACTIVE", ~StateMachine.name.contains("/"))
        .order_by(StateMachine.name)
    )  # a "<machine>/<label>" row is a Map Run's (app.workflows.resources.map_run_child)
    page = paginate(session, statement, limit, token)
    return Page([row[0] for row in page.items], page.next_token)


def delete_machine(session: Session, arn: Any) -> None:
    """DeleteStateMachine: gone at once when idle, else ``DELETING`` until its executions end
    (the sweeper removes it then). Its Map Runs' machines (``<name>/<label>``) go with it.
    Deleting what does not exist is not an error, as on AWS."""
    arns.state_machine_name(arn)
    machine = session.scalar(select(StateMachine).where(StateMachine.arn == arn))
    if machine is None:
        return
    runs = select(StateMachine).where(
        StateMachine.name.startswith(f"{machine.name}/", autoescape=True)
    )
    for doomed in [machine, *session.scalars(runs)]:
        running = session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.state_machine_id == doomed.id, Execution.status == "RUNNING")
        )
        if running:
            doomed.status = "DELETING"
        else:
            session.execute(delete(Execution).where(Execution.state_machine_id == doomed.id))
            session.delete(doomed)
    session.flush()


# --- executions -----------------------------------------------------------------------------


def parse_input(text: Any) -> tuple[str, Any]:
    """The execution input as given (kept verbatim) and parsed."""
    if text is None:
        text = "{}"
    if not isinstance(text, str):
        raise errors.invalid_input("The input must be a string of JSON")
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise errors.validation(
            "1 validation error detected: Value at 'input' failed to satisfy constraint: "
            "Member must have length less than or equal to 262144"
        )
    try:
        return text, json.loads(text)
    except ValueError as exc:
        raise errors.invalid_input(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Parent:
    """The Task state that starts an execution (``states:startExecution``): its execution, its
    task's ref, and ``wait`` ("sync" | "sync:2") when it waits for the execution to end."""

    execution_id: int
    ref: str
    wait: str | None = None


@dataclass(slots=True)
class Started:
    execution_id: int
    arn: str
    start_date: datetime
    created: bool
    written: store.Written


def start_execution(
    session: Session,
    settings: Settings,
    machine: StateMachine,
    *,
    name: Any,
    input_text: Any,
    now: datetime,
    parent: Parent | None = None,
) -> Started:
    """StartExecution of a Standard machine: the first step runs in this transaction.

    The same name with the same input while that execution runs answers the same execution;
    otherwise a taken name is ``ExecutionAlreadyExists`` (AWS's rule). ``parent`` links an
    execution a Task state starts to that task (:mod:`app.workflows.resources.start_execution`).
    """
    if machine.status == "DELETING":
        raise errors.state_machine_deleting(machine.arn)
    name = arns.check_name(str(uuid.uuid4()) if name is None else name)
    text, data = parse_input(input_text)
    arn = scope(settings).execution(machine.name, name)
    compiled = machines.compiled(session, machine.definition_hash)
    start = Start(data, arn, name, machine.arn, machine.name, machine.role_arn)
    step = advance(compiled, None, start, Env.system(now))
    values = {
        "arn": arn,
        "state_machine_id": machine.id,
        "name": name,
        "definition_hash": machine.definition_hash,
        "input": text,
        "start_date": now,
        "version": 1,
        "parent_id": None if parent is None else parent.execution_id,
        "parent_ref": None if parent is None else parent.ref,
        "parent_wait": None if parent is None else parent.wait,
        **store.execution_values(step, now),
    }
    execution_id = store.insert_execution(session, values)
    if execution_id is None:  # the name is taken: AWS's idempotency rule decides
        found = session.execute(
            select(
                Execution.id, Execution.arn, Execution.status, Execution.input, Execution.start_date
            ).where(Execution.state_machine_id == machine.id, Execution.name == name)
        ).one()
        if found.status == "RUNNING" and found.input == text:
            return Started(found.id, found.arn, found.start_date, False, store.Written())
        raise errors.execution_already_exists(found.arn)
    written = store.append(session, execution_id, step, now, region=settings.region)
    if step.state.map_runs:  # the first state is a distributed Map: its Map Run's row
        from app.workflows.map_runs import service as map_runs

        map_runs.sync(session, execution_id, None, step.state, now)
    change = StatusChange(arn, machine.arn, name, "RUNNING", now, None, text)
    written.deliveries.extend(publish(session, settings.region, settings.account_id, change, now))
    if step.state.finished:
        final = from_state(step.state, now, now)
        written.deliveries.extend(
            publish(session, settings.region, settings.account_id, final, now)
        )
    return Started(execution_id, arn, now, True, written)


def start_and_send(
    session: Session,
    settings: Settings,
    machine: StateMachine,
    *,
    name: Any,
    input_text: Any,
    parent: Parent | None = None,
) -> Started:
    """:func:`start_execution`, with what its first step asked for (tasks, timers, status
    events) registered to leave once ``session`` commits."""
    started = start_execution(
        session, settings, machine, name=name, input_text=input_text, now=utcnow(), parent=parent
    )
    written = started.written
    dispatch.send_after_commit(
        session, settings, started.execution_id, written.tasks, written.timers, written.deliveries
    )
    return started


@dataclass(frozen=True, slots=True)
class ExecutionView:
    execution: Execution
    state_machine_arn: str


def get_execution(session: Session, arn: Any) -> ExecutionView:
    ref = arns.execution_ref(arn)
    if ref.kind == "express":
        raise errors.invalid_arn(f"Resource type not valid in this context: {ref.kind}")
    row = session.execute(
        select(Execution, StateMachine.arn)
        .join(StateMachine, StateMachine.id == Execution.state_machine_id)
        .where(Execution.arn == arn)
    ).first()
    if row is None:
        raise errors.execution_does_not_exist(str(arn))
    return ExecutionView(row[0], row[1])


def list_executions(
    session: Session,
    machine: StateMachine,
    status: Any,
    limit: Any,
    token: Any,
    *,
    map_run_arn: str | None = None,
) -> Page:
    """ListExecutions of a machine, or (``map_run_arn``) of one Map Run's children."""
    if machine.type == "EXPRESS" and map_run_arn is None:
        raise errors.type_not_supported(
            "This operation is not supported by this type of state machine"
        )
    statement = select(Execution).where(Execution.state_machine_id == machine.id)
    if map_run_arn is not None:
        from app.workflows.map_runs.models import MapRunChild

        statement = statement.where(
            Execution.id.in_(
                select(MapRunChild.execution_id).where(MapRunChild.map_run_arn == map_run_arn)
            )
        )
    if status is not None:
        if status not in STATUSES:
            raise errors.validation(
                f"1 validation error detected: Value '{status}' at 'statusFilter' failed to "
                f"satisfy constraint: Member must satisfy enum value set: [{', '.join(STATUSES)}]"
            )
        statement = statement.where(Execution.status == status)
    statement = statement.order_by(Execution.start_date.desc(), Execution.id.desc())
    page = paginate(session, statement, limit, token)
    return Page([row[0] for row in page.items], page.next_token)


_DATA_KEYS = frozenset({"input", "output", "parameters"})


def history(
    session: Session,
    execution: Execution,
    *,
    limit: Any,
    token: Any,
    reverse: bool,
    include_data: bool,
) -> Page:
    """GetExecutionHistory: events in id order (newest first with ``reverse``)."""
    order = ExecutionEvent.event_id.desc() if reverse else ExecutionEvent.event_id
    statement = select(ExecutionEvent).where(ExecutionEvent.execution_id == execution.id)
    page = paginate(session, statement.order_by(order), limit, token)
    events = []
    for (event,) in page.items:
        item: dict[str, Any] = {
            "timestamp": event.timestamp,
            "type": event.type,
            "id": event.event_id,
            "previousEventId": event.previous_event_id,
        }
        if event.details is not None:
            details = json.loads(event.details)
            if not include_data:
                details = {
                    key: {k: v for k, v in value.items() if k not in _DATA_KEYS}
                    for key, value in details.items()
                }
            item.update(details)
        events.append(item)
    return Page(events, page.next_token)


def start(settings: Settings, machine_arn: Any, name: Any, input_text: Any) -> tuple[str, datetime]:
    """StartExecution as one unit of work: commit the first step, then (registered on the
    session) send what it asked for; an Express execution goes to a worker whole. Returns the
    execution ARN and start date."""
    from app.workflows import express  # express builds on this module (parse_input)

    def work(session: Session) -> tuple[str, datetime]:
        machine = get_machine(session, machine_arn)
        if "/" in machine.name:  # a Map Run's machine: only its distributed Map starts it
            raise errors.state_machine_does_not_exist(machine.arn)
        if machine.type == "EXPRESS":
            payload = express.payload(machine, express.prepare(settings, machine, name, input_text))
            after_commit(session).call(dispatch.send_express, settings, payload)
            return payload["start"]["execution_id"], utcnow()
        started = start_and_send(session, settings, machine, name=name, input_text=input_text)
        return started.arn, started.start_date

    return unit_of_work(settings, work)
