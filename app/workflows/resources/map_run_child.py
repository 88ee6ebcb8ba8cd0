"""A distributed Map's child executions: the interpreter's ``smokehouse:mapRun:iteration`` task.

Each item (or batch) of a Map Run is one execution of the Map's ItemProcessor, started the way
``states:startExecution.sync`` starts a child (:mod:`.start_execution`): in the parent's step
transaction (a task delivered twice never starts two children), linked to the parent's task
ref (``executions.parent_id``/``parent_ref``), and the task waits without a worker until the
child's final step wakes it; its next run reports the child's description (``TaskSucceeded``)
or ``States.TaskFailed`` with that description as the cause.

The children belong to the Map Run's own state machine, ``<machine ARN>/<label>``, as on AWS:
a ``state_machines`` row named ``<machine>/<label>`` (a name no API caller can give, and which
ListStateMachines leaves out) whose definition is the ItemProcessor; their ARNs are
``...:execution:<machine>/<label>:<uuid>``. ``map_run_children`` records which execution runs
which item, for DescribeMapRun's counts, ListExecutions(mapRunArn) and the ResultWriter.
EXPRESS children run in the worker, to their end, like a ``.sync`` Express child.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.aws.errors import AwsError
from app.db import get_database, utcnow
from app.workflows.asl import TaskError
from app.workflows.asl import distributed as dist
from app.workflows.resources.base import TaskCall
from app.workflows.resources.start_execution import (
    StartExecutionResource,
    Submitted,
    run_express_to_end,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.config import Settings
    from app.workflows.models import StateMachine


def child_name(map_run_arn: str, index: int) -> str:
    """The same UUID for every run of one child's task (idempotent starts)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{map_run_arn}#{index}"))


def run_machine(
    session: Session, settings: Settings, parent_machine_arn: str, params: dict[str, Any]
) -> StateMachine:
    """The Map Run's state machine row (``<machine>/<label>``), made or brought up to date with
    the ItemProcessor of the parent execution's own definition."""
    from app.workflows import machines, store
    from app.workflows.models import Execution, StateMachine

    arn = str(params["StateMachineArn"])
    parent = session.scalar(select(StateMachine).where(StateMachine.arn == parent_machine_arn))
    if parent is None:
        raise TaskError("States.Runtime", f"the state machine {parent_machine_arn} is gone")
    definition_hash = session.scalar(
        select(Execution.definition_hash).where(
            Execution.id == store.execution_id_of(session, params["ParentExecutionArn"])
        )
    )
    compiled = machines.compiled(session, definition_hash or parent.definition_hash)
    text = json.dumps(
        compiled.processor_definition(params["Processor"]), separators=(",", ":"), sort_keys=True
    )
    digest = machines.store(session, text)
    kind = str(params.get("ExecutionType", "STANDARD"))
    row = session.scalar(select(StateMachine).where(StateMachine.arn == arn))
    if row is None:
        try:
            with session.begin_nested():
                row = StateMachine(
                    id=str(uuid.uuid4()),
                    name=arn.split(":stateMachine:", 1)[1],
                    arn=arn,
                    type=kind,
                    definition_hash=digest,
                    role_arn=parent.role_arn,
                    revision_id=str(uuid.uuid4()),
                    created_at=utcnow(),
                )
                session.add(row)
        except IntegrityError:  # another parent made it first
            row = session.scalar(select(StateMachine).where(StateMachine.arn == arn))
            assert row is not None
    if row.definition_hash != digest or row.type != kind:
        row.definition_hash, row.type = digest, kind
    return row


class MapRunChildResource:
    kind = "mapRun"
    transactional = True

    def accepts(self, base: str) -> bool:
        return base == dist.ITERATION

    def problem(self, base: str) -> str | None:
        return f"The resource '{base}' is internal to distributed Map"

    def transactional_for(self, settings: Settings, resource: str, parameters: Any) -> bool:
        """EXPRESS children run in the worker, outside the parent's transaction."""
        return not (isinstance(parameters, dict) and parameters.get("ExecutionType") == "EXPRESS")

    def run(self, call: TaskCall) -> Any:
        params = dict(call.parameters) if isinstance(call.parameters, dict) else {}
        params["ParentExecutionArn"] = call.execution_arn
        if call.session is None:
            return self._run_express(call, params)
        try:
            return self._start(call, call.session, params)
        except AwsError as exc:  # a name clash or a bad input: fail the child, not the worker
            raise TaskError(f"StepFunctions.{exc.code}Exception", exc.message) from None

    def _start(self, call: TaskCall, session: Session, params: dict[str, Any]) -> Any:
        from app.workflows import service, store
        from app.workflows.map_runs import service as map_runs

        parent_id = store.execution_id_of(session, call.execution_arn)
        if parent_id is None:
            raise TaskError("States.Runtime", "a Map Run's children need a Standard parent")
        run_arn, index = str(params["MapRunArn"]), int(params["Index"])
        child = store.child_of(session, parent_id, call.ref)
        if child is None:
            machine = run_machine(session, call.settings, call.state_machine_arn, params)
            started = service.start_and_send(
                session,
                call.settings,
                machine,
                name=child_name(run_arn, index),
                input_text=json.dumps(params.get("Input"), separators=(",", ":")),
                parent=service.Parent(parent_id, call.ref, "sync"),
            )
            if not started.created:
                store.link_child(session, started.execution_id, parent_id, call.ref, "sync")
            child = started.execution_id
        map_runs.add_child(session, run_arn, index, child, int(params.get("ItemCount", 1)))
        return StartExecutionResource()._child(call, session, child, "sync")

    def _run_express(self, call: TaskCall, params: dict[str, Any]) -> Submitted:
        """An EXPRESS child: run here to its end (five minutes at most)."""
        from app.workflows import express, machines

        database = get_database(call.settings.sqlalchemy_url)
        with database.session() as session:
            machine = run_machine(session, call.settings, call.state_machine_arn, params)
            compiled = machines.compiled(session, machine.definition_hash)
            text = json.dumps(params.get("Input"), separators=(",", ":"))
            start = express.prepare(
                call.settings,
                machine,
                child_name(str(params["MapRunArn"]), int(params["Index"])),
                text,
            )
            machine_arn = machine.arn
        return run_express_to_end(call, compiled, start, machine_arn, text, "sync")
