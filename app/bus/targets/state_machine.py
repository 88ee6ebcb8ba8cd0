"""``arn:aws:states:<region>:<account>:stateMachine:<name>``: start an execution of a state
machine with the target's input (EventBridge's Step Functions target).

The execution is named after the delivery id, so every attempt of one delivery asks for the
same execution: StartExecution's idempotency (same name, same input) answers the running one,
and an attempt that finds it already finished (``ExecutionAlreadyExists``) succeeds too — a
retried delivery starts it once. Express machines are started asynchronously and, as on AWS,
at least once.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from app.aws.errors import AwsError
from app.bus.targets.base import DeliveryContext, TargetFailure
from app.db import utcnow
from app.workflows import dispatch, express, service

ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[^:]+$")
#: Errors a retry cannot fix: the delivery goes to the dead-letter queue instead.
PERMANENT = frozenset(
    {"StateMachineDoesNotExist", "StateMachineDeleting", "InvalidExecutionInput", "InvalidArn"}
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

        def start(session: Session) -> service.Started | dict[str, Any]:
            machine = service.get_machine(session, context.spec["Arn"])
            if machine.type == "EXPRESS":
                return express.payload(settings, machine, name, payload)
            return service.start_execution(
                session, settings, machine, name=name, input_text=payload, now=utcnow()
            )

        try:
            started = service.unit_of_work(settings, start)
        except AwsError as exc:
            if exc.code == "ExecutionAlreadyExists":
                return None  # an earlier attempt of this delivery started it
            raise TargetFailure(
                exc.message, retryable=exc.code not in PERMANENT, code=exc.code
            ) from None
        if isinstance(started, dict):
            dispatch.send_express(settings, started)
            return None
        written = started.written
        dispatch.after_commit(
            settings, started.execution_id, written.tasks, written.timers, written.deliveries
        )
        return None
