"""``arn:aws:states:<region>:<account>:stateMachine:<name>``: start an execution of a state
machine with the target's input (EventBridge's Step Functions target). It lives with workflows
and joins the bus's target registry through :mod:`app.wiring`: the bus does not know workflows.

The execution is named after the delivery id, so every attempt of one delivery asks for the
same execution: StartExecution's idempotency (same name, same input) answers the running one,
and an attempt that finds it already finished (``ExecutionAlreadyExists``) succeeds too — a
retried delivery starts it once. Express machines are started asynchronously and, as on AWS,
at least once.

An Express machine whose ``TimeoutSeconds`` fits well within the delivery claim
(``SMOKEHOUSE_BUS_CLAIM_SECONDS``) runs inline in this delivery, saving a Celery hop; a longer
(or unbounded) one goes to ``workflows.run_express``, so no other worker retries a delivery that
is still running. Either way the delivery succeeds once the execution has started: a FAILED
Express execution is logged, never retried or dead-lettered (EventBridge only calls
StartExecution). A worker killed mid-run leaves the delivery claimed; it is retried and the
execution runs again (at least once, as on AWS).
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
from app.workflows import dispatch, express, machines, service
from app.workflows.asl import CompiledMachine, Start
from app.workflows.models import StateMachine

log = logging.getLogger("smokehouse.workflows")

ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[^:]+$")
#: Errors a retry cannot fix: the delivery goes to the dead-letter queue instead.
PERMANENT = frozenset(
    {"StateMachineDoesNotExist", "StateMachineDeleting", "InvalidExecutionInput", "InvalidArn"}
)


#: An inline run may use at most this share of the delivery claim.
INLINE_CLAIM_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class _Express:
    machine: StateMachine
    start: Start
    compiled: CompiledMachine


def runs_inline(settings: Settings, machine: CompiledMachine) -> bool:
    """Whether an Express run surely ends before another worker may retry its delivery."""
    timeout = machine.timeout_seconds
    return timeout is not None and timeout <= settings.bus_claim_seconds * INLINE_CLAIM_SHARE


def _run_inline(settings: Settings, started: _Express) -> None:
    start = started.start
    try:
        result = express.run(settings, started.compiled, start)
    except Exception:  # the execution started; its failure is its own, not the delivery's
        log.exception("express execution %s crashed", start.execution_id)
        return
    log.info(
        "express execution %s: %s",
        start.execution_id,
        result.status,
        extra={"error": result.error, "cause": result.cause},
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
            if runs_inline(settings, started.compiled):
                _run_inline(settings, started)
            else:  # nothing was committed: a failed send fails (and retries) the delivery
                dispatch.send_express(settings, express.payload(started.machine, started.start))
        return None
