"""``arn:aws:states:<region>:<account>:stateMachine:<name>``: start an execution of a state
machine with the target's input (EventBridge's Step Functions target). It lives with workflows
and joins the bus's target registry through :mod:`app.wiring`: the bus does not know workflows.

**Standard** machines: the execution is named after the delivery id, so every attempt of one
delivery asks for the same execution: StartExecution's idempotency (same name, same input)
answers the running one, and an attempt that finds it already finished
(``ExecutionAlreadyExists``) succeeds too — a retried delivery starts it once. The delivery
succeeds once the execution has started; the execution's own failures are in its history.

**Express** machines run inside the delivery, and their outcome *is* the delivery's: SUCCEEDED
succeeds; FAILED, TIMED_OUT or ABORTED (or a crash) is a failed attempt (``ExecutionFailed``,
``ExecutionTimedOut``, ``ExecutionAborted``), retried by the rule's RetryPolicy and then
dead-lettered, redrivable. EventBridge itself only calls StartExecution and forgets an Express
failure; here nothing a rule routes is lost silently (enrich-and-store's readings included). The
delivery's claim is renewed while the run lasts (up to Express's 5 minutes), so no other worker
attempts it meanwhile; a worker killed mid-run is retried after its claim lapses, and the run
happens again: at least once, each run with the same input.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.aws.errors import AwsError
from app.bus.targets.base import DeliveryContext, TargetFailure
from app.config import Settings
from app.workflows import express, machines, service
from app.workflows.asl import CompiledMachine, Start
from app.workflows.models import StateMachine

log = logging.getLogger("smokehouse.workflows")

ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[^:]+$")
#: Errors a retry cannot fix: the delivery goes to the dead-letter queue instead.
PERMANENT = frozenset(
    {"StateMachineDoesNotExist", "StateMachineDeleting", "InvalidExecutionInput", "InvalidArn"}
)


@dataclass(frozen=True, slots=True)
class _Express:
    machine: StateMachine
    start: Start
    compiled: CompiledMachine


#: An Express run's end state -> the delivery's error code.
FAILED_STATUSES = {
    "FAILED": "ExecutionFailed",
    "TIMED_OUT": "ExecutionTimedOut",
    "ABORTED": "ExecutionAborted",
}


def _run(settings: Settings, started: _Express) -> None:
    """Run the Express execution; anything but SUCCEEDED fails the attempt (retryable)."""
    start = started.start
    try:
        result = express.run(settings, started.compiled, start)
    except Exception as exc:
        log.exception("express execution %s crashed", start.execution_id)
        raise TargetFailure(
            f"express execution {start.execution_id} crashed: {type(exc).__name__}",
            retryable=True,
            code="ExecutionFailed",
        ) from None
    log.info(
        "express execution %s: %s",
        start.execution_id,
        result.status,
        extra={"error": result.error, "cause": result.cause},
    )
    if result.status != "SUCCEEDED":
        detail = ": ".join(str(p) for p in (result.error, result.cause) if p)
        raise TargetFailure(
            f"express execution {start.execution_id} {result.status}"
            + (f" ({detail[:500]})" if detail else ""),
            retryable=True,
            code=FAILED_STATUSES.get(result.status, "ExecutionFailed"),
        )


def execution_name(delivery_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", delivery_id)[:80]


class StateMachineTarget:
    kind = "state-machine"

    def accepts(self, arn: str) -> bool:
        return bool(ARN.match(arn))

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        return None  # as on AWS, the state machine is looked up when the event is delivered

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        settings = context.settings
        name = execution_name(context.delivery_id)

        def start(session: Session) -> service.Started | _Express:
            machine = service.get_machine(session, context.spec["Arn"])
            if machine.type == "EXPRESS":
                start = express.prepare(settings, machine, name, payload)
                return _Express(machine, start, machines.compiled(session, machine.definition_hash))
            return service.start_and_send(session, settings, machine, name=name, input_text=payload)

        try:
            started = service.unit_of_work(settings, start)
        except AwsError as exc:
            if exc.code == "ExecutionAlreadyExists":
                return None  # an earlier attempt of this delivery started it
            raise TargetFailure(
                exc.message, retryable=exc.code not in PERMANENT, code=exc.code
            ) from None
        if isinstance(started, _Express):
            _run(settings, started)
        return None
