"""``arn:aws:states:::smokehouse:task:<name>`` (and ``arn:smokehouse:handler:<name>``): run a
registered Python handler — smokehouse's Lambda functions.

A handler failure is reported the way Lambda reports one: the error is the exception's class
name (so ``Retry``/``Catch`` can match ``ValueError`` or your own ``OrderRejected``) and the cause
is ``{"errorMessage", "errorType"}`` JSON. Raise :class:`~app.workflows.asl.TaskError` to choose
both. ``context.invocation_id`` is the same every time the same task attempt runs (a worker
crash re-runs it), for dedupe; ``context.extra`` carries ``task_token`` for callbacks.
"""

from __future__ import annotations

import json
from typing import Any

from app.handlers import HandlerContext, UnknownHandler, handlers
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall, require_json

PREFIXES = ("arn:aws:states:::smokehouse:task:", "arn:smokehouse:handler:")


def handler_name(base: str) -> str | None:
    for prefix in PREFIXES:
        if base.startswith(prefix) and len(base) > len(prefix):
            return base[len(prefix) :]
    return None


class HandlerResource:
    kind = "handler"
    transactional = False

    def accepts(self, base: str) -> bool:
        return handler_name(base) is not None

    def problem(self, base: str) -> str | None:
        return None  # handlers may be registered by worker processes only: checked at run time

    def run(self, call: TaskCall) -> Any:
        name = handler_name(call.base)
        assert name is not None
        try:
            return run_handler(name, call.parameters, call)
        except UnknownHandler as exc:
            raise TaskError("States.TaskFailed", str(exc)) from None


def run_handler(name: str, payload: Any, call: TaskCall) -> Any:
    """Run registered handler ``name`` on ``payload`` for ``call``; its JSON result. A handler
    that is not registered is :class:`UnknownHandler`; one that raises fails the task as Lambda
    reports a function error."""
    function = handlers.get(name)
    context = HandlerContext(
        name,
        call.invocation_id,
        call.attempt,
        extra={
            "execution_arn": call.execution_arn,
            "state_machine_arn": call.state_machine_arn,
            "state_name": call.state_name,
            "task_token": call.token,
        },
        settings=call.settings,
    )
    try:
        result = function(payload, context)
    except TaskError:
        raise
    except Exception as exc:  # the handler's failure is the task's failure
        kind = type(exc).__name__
        raise TaskError(kind, json.dumps({"errorMessage": str(exc), "errorType": kind})) from exc
    return require_json(result, f"the result of handler {name!r}")
