"""What a Task resource is: something that takes the Task's parameters and returns its result.

A resource raises :class:`~app.workflows.asl.TaskError` with Step Functions' error name
(``States.Http.StatusCode.404``, ``Ec2.Ec2Exception``, ...) to fail the task; anything else it
raises becomes ``States.TaskFailed``. ``transactional`` resources write only to our own database
and run inside the transaction that records their result, so they happen exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.config import Settings
from app.workflows.asl import TaskError

TOKEN_SUFFIX = ".waitForTaskToken"


@dataclass(slots=True)
class TaskCall:
    """One invocation of a resource by one task attempt."""

    resource: str  # the Task's Resource field, suffix included
    parameters: Any
    settings: Settings
    execution_arn: str
    state_machine_arn: str
    state_name: str
    ref: str  # unique per task attempt: a stable idempotency key
    attempt: int = 1  # at-least-once runs of this ref (1 the first time)
    token: str | None = None  # .waitForTaskToken
    timeout_seconds: int | None = None
    session: Session | None = None  # for transactional resources

    @property
    def base(self) -> str:
        """The resource without its integration-pattern suffix."""
        return self.resource.removesuffix(TOKEN_SUFFIX)

    @property
    def invocation_id(self) -> str:
        return f"{self.execution_arn}#{self.ref}"


class Resource(Protocol):
    """One kind of Task resource, recognised by its ARN."""

    kind: str
    transactional: bool

    def accepts(self, base: str) -> bool: ...

    def problem(self, base: str) -> str | None:
        """Why a definition may not use this resource (checked at create time), or None."""
        ...

    def run(self, call: TaskCall) -> Any: ...


def require_json(value: Any, what: str) -> Any:
    """A result must be JSON; fail the task (not the worker) when it is not."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TaskError("States.Runtime", f"{what} is not JSON: {exc}") from None
    return value
