"""``arn:aws:states:::states:startExecution`` — a Task state that starts another execution.

Three integration patterns, as on AWS:

* **request-response** (no suffix): the result is StartExecution's answer,
  ``{ExecutionArn, SdkHttpMetadata, SdkResponseMetadata, StartDate}``;
* **``.sync``** / **``.sync:2``**: ``TaskSubmitted`` carries that answer, and the task ends when
  the child does, with DescribeExecution's shape in PascalCase (``ExecutionArn``, ``Input``,
  ``InputDetails``, ``Name``, ``Output``, ``OutputDetails``, ``StartDate``, ``StateMachineArn``,
  ``Status``, ``StopDate``, …): ``Input``/``Output`` as JSON text for ``.sync``, parsed for
  ``.sync:2``. A child that does not succeed fails the task with ``States.TaskFailed`` and that
  shape (with ``Error``/``Cause``) as JSON text for the cause;
* **``.waitForTaskToken``**: the child is started, ``TaskSubmitted`` records it, and whoever holds
  the token answers.

A Standard child is started in the parent's step transaction (``transactional``): the child's
rows and the parent's ``TaskSubmitted`` commit together or not at all, so a task delivered twice
never starts two children. The child row names the parent and the task's ref
(``executions.parent_id``/``parent_ref``); a ``.sync`` task then waits without a worker: the
child's final step puts the parent's task back to ``scheduled`` (:func:`app.workflows.store.
wake_parent`), and the task's next run finds the child ended and reports it. An Express child
is started on a worker; with ``.sync`` it runs in this worker instead (at most five minutes), as
``StartSyncExecution`` would. Without ``Name`` the child is named by a UUID derived from the
parent execution and the task's ref, so a repeated attempt names the same child.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select

from app.aws.errors import AwsError
from app.db import after_commit, get_database, utcnow
from app.workflows.asl import TaskError
from app.workflows.asl.model import iso
from app.workflows.resources.base import TOKEN_SUFFIX, TaskCall

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.config import Settings
    from app.workflows.models import Execution, StateMachine

START: Final = "arn:aws:states:::states:startExecution"
#: The ``.sync`` suffixes and what the parent waits for.
WAITS: Final = {f"{START}.sync": "sync", f"{START}.sync:2": "sync:2"}
PARAMETERS: Final = frozenset({"StateMachineArn", "Input", "Name"})
FINISHED: Final = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True, slots=True)
class Submitted:
    """A resource's answer when the job it started may outlive the call: ``output`` goes into
    ``TaskSubmitted``; the task ends now only when ``done`` (with ``result``, or ``error`` and
    ``cause``), else later (the child's end or the token's answer)."""

    output: Any
    done: bool = False
    result: Any = None
    error: str | None = None
    cause: str | None = None


def wait_of(resource: str) -> str | None:
    """``"sync"``/``"sync:2"`` for a ``.sync`` startExecution resource, else None."""
    return WAITS.get(resource)


def _fail(exc: AwsError, call: TaskCall) -> TaskError:
    """An API error as the optimized integration reports it: ``StepFunctions.<Code>Exception``
    with the SDK's message and request details for the cause."""
    return TaskError(
        f"StepFunctions.{exc.code}Exception",
        f"{exc.message} (Service: AWSStepFunctions; Status Code: {exc.status}; Error Code: "
        f"{exc.code}; Request ID: {_request_id(call)}; Proxy: null)",
    )


def _request_id(call: TaskCall) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, call.invocation_id))


def default_name(call: TaskCall) -> str:
    """The child's name when the task gives none: a UUID, the same for every run of one task
    attempt (so an at-least-once retry meets StartExecution's idempotency, not a second child)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, call.invocation_id))


def input_text(value: Any) -> str:
    """``Input`` as StartExecution takes it: a string as given, JSON otherwise, ``{}`` if
    absent."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def started_answer(call: TaskCall, arn: str, start: datetime) -> dict[str, Any]:
    """StartExecution's answer through the optimized integration."""
    return {
        "ExecutionArn": arn,
        "SdkHttpMetadata": {"HttpStatusCode": 200},
        "SdkResponseMetadata": {"RequestId": _request_id(call)},
        "StartDate": iso(start),
    }


def described(
    *,
    arn: str,
    machine_arn: str,
    name: str,
    status: str,
    start: datetime,
    stop: datetime | None,
    input_json: str,
    output: str | None,
    error: str | None,
    cause: str | None,
    wait: str,
) -> dict[str, Any]:
    """DescribeExecution's answer in the integration's PascalCase, keys sorted as AWS prints
    them; ``.sync:2`` parses ``Input`` and ``Output``."""
    parse = wait == "sync:2"
    out: dict[str, Any] = {
        "ExecutionArn": arn,
        "Input": json.loads(input_json) if parse else input_json,
        "InputDetails": {"Included": True},
        "Name": name,
        "RedriveCount": 0,
        "RedriveStatus": "NOT_REDRIVABLE",
        "StartDate": iso(start),
        "StateMachineArn": machine_arn,
        "Status": status,
    }
    if status == "SUCCEEDED":
        out["RedriveStatusReason"] = "Execution is SUCCEEDED and cannot be redriven"
    if stop is not None:
        out["StopDate"] = iso(stop)
    if output is not None:
        out["Output"] = json.loads(output) if parse else output
        out["OutputDetails"] = {"Included": True}
    if error is not None:
        out["Error"] = error
    if cause is not None:
        out["Cause"] = cause
    return dict(sorted(out.items()))


def ended(answer: Any, view: dict[str, Any]) -> Submitted:
    """The task's outcome once the child ended: its description, or ``States.TaskFailed``."""
    if view["Status"] == "SUCCEEDED":
        return Submitted(answer, done=True, result=view)
    cause = json.dumps(view, separators=(",", ":"), ensure_ascii=False)
    return Submitted(answer, done=True, error="States.TaskFailed", cause=cause)


class StartExecutionResource:
    kind = "states"
    transactional = True

    def accepts(self, base: str) -> bool:
        return base == START or base in WAITS

    def problem(self, base: str) -> str | None:
        return None

    def transactional_for(self, settings: Settings, resource: str, parameters: Any) -> bool:
        """A ``.sync`` Express child runs in this worker, outside the parent's transaction."""
        if wait_of(resource) is None:
            return True
        arn = parameters.get("StateMachineArn") if isinstance(parameters, dict) else None
        from app.workflows.models import StateMachine

        with get_database(settings.sqlalchemy_url).session() as session:
            kind = session.scalar(select(StateMachine.type).where(StateMachine.arn == arn))
        return kind != "EXPRESS"

    def run(self, call: TaskCall) -> Any:
        params = call.parameters if isinstance(call.parameters, dict) else {}
        unknown = sorted(set(params) - PARAMETERS)
        if unknown:
            raise TaskError(
                "States.Runtime",
                f"The field '{unknown[0]}' is not supported by Step Functions",
            )
        wait = wait_of(call.base)
        if call.session is None:  # a .sync Express child (see transactional_for)
            return self._run_express(call, params, wait or "sync")
        try:
            return self._start(call, call.session, params, wait)
        except AwsError as exc:
            raise _fail(exc, call) from None

    def _start(
        self, call: TaskCall, session: Session, params: dict[str, Any], wait: str | None
    ) -> Any:
        from app.workflows import dispatch, express, service, store

        parent_id = store.execution_id_of(session, call.execution_arn)  # None: an Express parent
        if parent_id is not None:
            child = store.child_of(session, parent_id, call.ref)
            if child is not None:  # this attempt ran before: report the same child
                return self._child(call, session, child, wait)
        machine = service.get_machine(session, params.get("StateMachineArn"))
        text = input_text(params.get("Input"))
        name = params.get("Name")
        if name is None:
            name = default_name(call)
        if machine.type == "EXPRESS":
            if wait is not None:  # pragma: no cover - transactional_for sends it to _run_express
                raise TaskError("States.Runtime", "a .sync Express child runs outside a step")
            start = express.prepare(call.settings, machine, name, text)
            payload = express.payload(machine, start)
            after_commit(session).call(dispatch.send_express, call.settings, payload)
            answer = started_answer(call, start.execution_id, utcnow())
            return Submitted(answer) if call.token is not None else answer
        parent = None if parent_id is None else service.Parent(parent_id, call.ref, wait)
        started = service.start_and_send(
            session, call.settings, machine, name=name, input_text=text, parent=parent
        )
        if not started.created and parent_id is not None:
            adopted = store.link_child(session, started.execution_id, parent_id, call.ref, wait)
            if not adopted and wait is not None:  # another task waits on it: AWS's own error
                from app.workflows import errors

                raise errors.execution_already_exists(started.arn)
        answer = started_answer(call, started.arn, started.start_date)
        if wait is None:
            return Submitted(answer) if call.token is not None else answer
        return self._child(call, session, started.execution_id, wait, answer)

    def _child(
        self,
        call: TaskCall,
        session: Session,
        child_id: int,
        wait: str | None,
        answer: Any = None,
    ) -> Any:
        """The task's answer about a child it started: submitted, or ended."""
        from app.workflows.models import Execution, StateMachine

        row = session.execute(
            select(Execution, StateMachine.arn)
            .join(StateMachine, StateMachine.id == Execution.state_machine_id)
            .where(Execution.id == child_id)
        ).one()
        child: Execution = row[0]
        if answer is None:
            answer = started_answer(call, child.arn, child.start_date)
        if wait is None:  # request-response or callback, run again: the same answer
            return Submitted(answer) if call.token is not None else answer
        if child.status not in FINISHED:
            return Submitted(answer)
        return ended(answer, self._view(child, row[1], wait))

    @staticmethod
    def _view(child: Execution, machine_arn: str, wait: str) -> dict[str, Any]:
        return described(
            arn=child.arn,
            machine_arn=machine_arn,
            name=child.name,
            status=child.status,
            start=child.start_date,
            stop=child.stop_date,
            input_json=child.input,
            output=child.output,
            error=child.error,
            cause=child.cause,
            wait=wait,
        )

    def _run_express(self, call: TaskCall, params: dict[str, Any], wait: str) -> Submitted:
        """``.sync`` of an Express child: run it here, to its end (five minutes at most)."""
        from app.workflows import express, machines, service

        database = get_database(call.settings.sqlalchemy_url)
        try:
            with database.session() as session:
                machine: StateMachine = service.get_machine(session, params.get("StateMachineArn"))
                compiled = machines.compiled(session, machine.definition_hash)
                name = params.get("Name")
                text = input_text(params.get("Input"))
                start = express.prepare(
                    call.settings, machine, default_name(call) if name is None else name, text
                )
        except AwsError as exc:
            raise _fail(exc, call) from None
        return run_express_to_end(call, compiled, start, machine.arn, text, wait)


def run_express_to_end(
    call: TaskCall, compiled: Any, start: Any, machine_arn: str, input_json: str, wait: str
) -> Submitted:
    """Run a prepared Express child here, to its end (five minutes at most), and answer as
    ``.sync`` answers: started, then ended with the child's description."""
    from app.workflows import express

    answer = started_answer(call, start.execution_id, utcnow())
    result = express.run(call.settings, compiled, start)
    output = None
    if result.status == "SUCCEEDED":
        output = json.dumps(result.output, separators=(",", ":"), ensure_ascii=False)
    view = described(
        arn=start.execution_id,
        machine_arn=machine_arn,
        name=start.execution_name,
        status=result.status,
        start=result.start_date,
        stop=result.stop_date,
        input_json=input_json,
        output=output,
        error=result.error,
        cause=result.cause,
        wait=wait,
    )
    return ended(answer, view)


__all__ = ["START", "TOKEN_SUFFIX", "StartExecutionResource", "Submitted", "wait_of"]
